import Testing

@testable import Homeport

/// The quota HTTP handler, called directly with requests as a node would
/// pass them: routes, bodies, statuses, and bad input that must be
/// rejected with a problem naming the field while nothing stored changes.
@Suite struct QuotaRequestHandlerTests {
    static let quotaPath = "/v1/tenants/acme/quota"
    static let reservationsPath = "/v1/tenants/acme/quota/reservations"

    /// One region on the embedded store with tenant acme's policy (limit
    /// 1,000 tokens per hour) and a held reservation `held-1` of 40 tokens.
    struct Fixture {
        let cluster: QuotaTestCluster
        let handler: QuotaRequestHandler

        init() async throws {
            var configuration = QuotaService.Configuration.testing
            configuration.sizing.refillFraction = 0
            configuration.sizing.horizon = .seconds(1)
            cluster = try QuotaTestCluster(regions: ["us-east"], configuration: configuration)
            handler = QuotaRequestHandler(service: cluster["us-east"])
            await cluster.step()
            let policy = try await send("PUT", QuotaRequestHandlerTests.quotaPath, body: #"{"limit":1000,"periodSeconds":3600}"#)
            try #require(policy.status == 200)
            let held = try await send("POST", QuotaRequestHandlerTests.reservationsPath, body: #"{"requestId":"held-1","amount":40}"#)
            try #require(held.status == 201)
        }

        /// Routes and handles one request; errors become problem responses
        /// through `ProblemDetails`, as the node does.
        func send(_ method: String, _ path: String, query: [String: String] = [:], body: String? = nil) async throws -> HTTPResponse {
            let request = HTTPRequest(method: method, path: path, query: query, body: body.map { Array($0.utf8) } ?? [])
            do {
                guard let route = try QuotaRequestHandler.route(method: method, path: path) else {
                    return HTTPResponse(status: 404)
                }
                return try await handler.handle(route, request: request)
            } catch {
                return ProblemDetails.from(error).response()
            }
        }

        /// Returns the stored record, the held reservation and the counters, to show that a rejected request changed nothing.
        func snapshot() async throws -> String {
            let record = try cluster.record(.test("acme"))
            let reservation = try? cluster["us-east"].reservation(tenant: .test("acme"), requestID: .test("held-1"))
            let counters = try await cluster["us-east"].status(tenant: .test("acme")).regionView?.counters
            return "\(String(describing: record))|\(String(describing: reservation))|\(String(describing: counters))"
        }
    }

    static func json(_ response: HTTPResponse) throws -> JSONValue {
        try JSONValue.parse(response.body)
    }

    // MARK: Routes

    @Test func routesParse() throws {
        let tenant = TenantID.test("acme")
        let id = ReservationID.test("r-1")
        #expect(try QuotaRequestHandler.route(method: "PUT", path: Self.quotaPath) == .setPolicy(tenant))
        #expect(try QuotaRequestHandler.route(method: "GET", path: Self.quotaPath) == .status(tenant))
        #expect(try QuotaRequestHandler.route(method: "POST", path: Self.reservationsPath) == .reserve(tenant))
        #expect(try QuotaRequestHandler.route(method: "GET", path: Self.reservationsPath + "/r-1") == .reservation(tenant, id))
        #expect(try QuotaRequestHandler.route(method: "DELETE", path: Self.reservationsPath + "/r-1") == .release(tenant, id))
        #expect(try QuotaRequestHandler.route(method: "POST", path: Self.reservationsPath + "/r-1/commit") == .commit(tenant, id))
    }

    @Test func otherPathsAreNotQuotaRoutes() throws {
        #expect(try QuotaRequestHandler.route(method: "GET", path: "/healthz") == nil)
        #expect(try QuotaRequestHandler.route(method: "POST", path: "/v1/tenants/acme/sessions") == nil)
        #expect(try QuotaRequestHandler.route(method: "GET", path: "/v1/tenants/acme/quotas") == nil)
        #expect(try QuotaRequestHandler.route(method: "GET", path: "/v2/tenants/acme/quota") == nil)
    }

    @Test(arguments: [
        ("GET", "/v1/tenants/Acme/quota", "invalid-path-parameter", "tenant"),
        ("GET", "/v1/tenants/-acme/quota/reservations/r-1", "invalid-path-parameter", "tenant"),
        ("GET", "/v1/tenants/acme/quota/reservations/a b", "invalid-path-parameter", "requestId"),
        ("GET", "/v1/tenants/acme/quota/reservations/..", "invalid-path-parameter", "requestId"),
        (
            "POST", "/v1/tenants/acme/quota/reservations/" + String(repeating: "x", count: 129) + "/commit", "invalid-path-parameter",
            "requestId"
        ),
    ])
    func badPathParameterIsNamed(method: String, path: String, code: String, field: String) throws {
        let error = #expect(throws: RequestError.self) { try QuotaRequestHandler.route(method: method, path: path) }
        #expect(error?.code.rawValue == code)
        #expect(error?.field == field)
    }

    @Test func unknownQuotaPathAndWrongMethod() async throws {
        let fixture = try await Fixture()

        let unknown = try await fixture.send("GET", Self.quotaPath + "/limits")
        let wrong = try await fixture.send("POST", Self.quotaPath)
        let commitGet = try await fixture.send("GET", Self.reservationsPath + "/held-1/commit")

        #expect(unknown.status == 404)
        #expect(try Self.json(unknown)["type"] == .string("urn:homeport:problem:route-not-found"))
        #expect(wrong.status == 405)
        #expect(wrong.header("Allow") == "GET, PUT")
        #expect(commitGet.status == 405)
        #expect(commitGet.header("Allow") == "POST")
    }

    // MARK: Policy

    @Test func putPolicyStoresIt() async throws {
        let fixture = try await Fixture()

        let response = try await fixture.send(
            "PUT", Self.quotaPath, body: #"{"limit":5000,"periodSeconds":60,"failMode":"open","failOpenBound":200}"#)

        #expect(response.status == 200)
        let body = try Self.json(response)
        #expect(body["limit"] == .integer(5000))
        #expect(body["failMode"] == .string("open"))
        #expect(body["outstanding"] == .integer(100))
        let record = try #require(try fixture.cluster.record(.test("acme")))
        #expect(record.policy == QuotaPolicy(limit: 5000, periodSeconds: 60, failMode: .open, failOpenBound: 200))
    }

    @Test(
        arguments: [
            ("", "malformed-json", nil),
            ("[1]", "wrong-type", nil),
            (#"{"periodSeconds":60}"#, "missing-field", "limit"),
            (#"{"limit":"10","periodSeconds":60}"#, "wrong-type", "limit"),
            (#"{"limit":0,"periodSeconds":60}"#, "invalid-value", "limit"),
            (#"{"limit":-5,"periodSeconds":60}"#, "invalid-value", "limit"),
            (#"{"limit":1.5,"periodSeconds":60}"#, "invalid-value", "limit"),
            (#"{"limit":10000000000000000,"periodSeconds":60}"#, "invalid-value", "limit"),
            (#"{"limit":10}"#, "missing-field", "periodSeconds"),
            (#"{"limit":10,"periodSeconds":0}"#, "invalid-value", "periodSeconds"),
            (#"{"limit":10,"periodSeconds":31622401}"#, "invalid-value", "periodSeconds"),
            (#"{"limit":10,"periodSeconds":60,"failMode":"sometimes"}"#, "invalid-value", "failMode"),
            (#"{"limit":10,"periodSeconds":60,"failMode":true}"#, "wrong-type", "failMode"),
            (#"{"limit":10,"periodSeconds":60,"failOpenBound":5}"#, "invalid-policy", "failOpenBound"),
            (#"{"limit":10,"periodSeconds":60,"failMode":"open","failOpenBound":-1}"#, "invalid-value", "failOpenBound"),
            (#"{"limit":10,"periodSeconds":60,"owner":"me"}"#, "unknown-field", "owner"),
        ] as [(String, String, String?)])
    func badPolicyIsRejected(body: String, code: String, field: String?) async throws {
        let fixture = try await Fixture()
        let before = try await fixture.snapshot()

        let response = try await fixture.send("PUT", Self.quotaPath, body: body)

        #expect(response.status == 400)
        #expect(response.header("Content-Type") == "application/problem+json")
        let problem = try Self.json(response)
        #expect(problem["type"] == .string("urn:homeport:problem:" + code))
        #expect(problem["field"]?.stringValue == field)
        #expect(try await fixture.snapshot() == before)
    }

    @Test func limitBelowUsageIsConflict() async throws {
        let fixture = try await Fixture()
        let before = try await fixture.snapshot()

        let response = try await fixture.send("PUT", Self.quotaPath, body: #"{"limit":50,"periodSeconds":3600}"#)

        #expect(response.status == 409)
        #expect(try Self.json(response)["field"] == .string("limit"))
        #expect(try await fixture.snapshot() == before)
    }

    @Test func queryParametersAreRejectedOnEveryRoute() async throws {
        let fixture = try await Fixture()
        let before = try await fixture.snapshot()
        let requests: [(String, String, String?)] = [
            ("PUT", Self.quotaPath, #"{"limit":1000,"periodSeconds":3600}"#),
            ("GET", Self.quotaPath, nil),
            ("POST", Self.reservationsPath, #"{"requestId":"q-1","amount":1}"#),
            ("GET", Self.reservationsPath + "/held-1", nil),
            ("DELETE", Self.reservationsPath + "/held-1", nil),
            ("POST", Self.reservationsPath + "/held-1/commit", #"{"used":1}"#),
        ]

        for (method, path, body) in requests {
            let response = try await fixture.send(method, path, query: ["verbose": "1"], body: body)
            #expect(response.status == 400, "\(method) \(path)")
            #expect(try Self.json(response)["field"] == .string("verbose"), "\(method) \(path)")
        }
        #expect(try await fixture.snapshot() == before)
    }

    @Test func bodyIsRejectedOnGetAndDelete() async throws {
        let fixture = try await Fixture()
        let before = try await fixture.snapshot()

        for (method, path) in [
            ("GET", Self.quotaPath), ("GET", Self.reservationsPath + "/held-1"), ("DELETE", Self.reservationsPath + "/held-1"),
        ] {
            let response = try await fixture.send(method, path, body: "{}")
            #expect(response.status == 400, "\(method) \(path)")
            #expect(try Self.json(response)["field"] == .string("body"), "\(method) \(path)")
        }
        #expect(try await fixture.snapshot() == before)
    }

    // MARK: Reservations

    @Test func reserveGrantsThenReplays() async throws {
        let fixture = try await Fixture()

        let first = try await fixture.send("POST", Self.reservationsPath, body: #"{"requestId":"job-7","amount":25}"#)
        let again = try await fixture.send("POST", Self.reservationsPath, body: #"{"requestId":"job-7","amount":25}"#)

        #expect(first.status == 201)
        let body = try Self.json(first)
        #expect(body["requestId"] == .string("job-7"))
        #expect(body["amount"] == .integer(25))
        #expect(body["granted"] == .bool(true))
        #expect(body["servedFrom"] == .string("chunk"))
        #expect(body["expiresAt"] == .integer(fixture.cluster.clock.nowMilliseconds() + 60_000))
        #expect(again.status == 200)
        #expect(again.header(QuotaRequestHandler.replayedHeader) == "true")
        let replay = try Self.json(again)
        #expect(replay["replayed"] == .bool(true))
        #expect(replay["expiresAt"] == body["expiresAt"])
        #expect(replay["servedFrom"] == body["servedFrom"])
    }

    @Test(
        arguments: [
            ("", "malformed-json", nil),
            ("{", "malformed-json", nil),
            ("42", "wrong-type", nil),
            (#"{"amount":5}"#, "missing-field", "requestId"),
            (#"{"requestId":7,"amount":5}"#, "wrong-type", "requestId"),
            (#"{"requestId":"a b","amount":5}"#, "invalid-value", "requestId"),
            (#"{"requestId":"","amount":5}"#, "invalid-value", "requestId"),
            (#"{"requestId":"\#(String(repeating: "x", count: 129))","amount":5}"#, "invalid-value", "requestId"),
            (#"{"requestId":"new-1"}"#, "missing-field", "amount"),
            (#"{"requestId":"new-1","amount":0}"#, "invalid-value", "amount"),
            (#"{"requestId":"new-1","amount":-3}"#, "invalid-value", "amount"),
            (#"{"requestId":"new-1","amount":2.5}"#, "invalid-value", "amount"),
            (#"{"requestId":"new-1","amount":"5"}"#, "wrong-type", "amount"),
            (#"{"requestId":"new-1","amount":5,"priority":1}"#, "unknown-field", "priority"),
        ] as [(String, String, String?)])
    func badReservationIsRejected(body: String, code: String, field: String?) async throws {
        let fixture = try await Fixture()
        let before = try await fixture.snapshot()

        let response = try await fixture.send("POST", Self.reservationsPath, body: body)

        #expect(response.status == 400)
        let problem = try Self.json(response)
        #expect(problem["type"] == .string("urn:homeport:problem:" + code))
        #expect(problem["field"]?.stringValue == field)
        #expect(try await fixture.snapshot() == before)
        let created = try await fixture.send("GET", Self.reservationsPath + "/new-1")
        #expect(created.status == 404)
    }

    @Test func reusedRequestIDIsUnprocessable() async throws {
        let fixture = try await Fixture()
        let before = try await fixture.snapshot()

        let response = try await fixture.send("POST", Self.reservationsPath, body: #"{"requestId":"held-1","amount":41}"#)

        #expect(response.status == 422)
        let problem = try Self.json(response)
        #expect(problem["type"] == .string("urn:homeport:problem:request-id-reused"))
        #expect(problem["field"] == .string("amount"))
        #expect(problem["detail"]?.stringValue?.contains("40") == true)
        #expect(try await fixture.snapshot() == before)
    }

    @Test func deniedReservationIsTooManyRequests() async throws {
        let fixture = try await Fixture()

        let response = try await fixture.send("POST", Self.reservationsPath, body: #"{"requestId":"big","amount":990}"#)
        let again = try await fixture.send("POST", Self.reservationsPath, body: #"{"requestId":"big","amount":990}"#)

        #expect(response.status == 429)
        #expect(response.header("Content-Type") == "application/problem+json")
        let problem = try Self.json(response)
        #expect(problem["type"] == .string("urn:homeport:problem:quota-exceeded"))
        #expect(problem["reason"] == .string("limit-reached"))
        #expect(problem["granted"] == .bool(false))
        #expect(problem["requestId"] == .string("big"))
        #expect(problem["detail"]?.stringValue?.contains("limit of 1000 tokens") == true)
        #expect(again.status == 429)
        #expect(again.header(QuotaRequestHandler.replayedHeader) == "true")
    }

    @Test func storeUnavailableDenialIsServiceUnavailable() async throws {
        let fixture = try await Fixture()
        // Spend the chunk, then lose the store.
        _ = try await fixture.send("POST", Self.reservationsPath, body: #"{"requestId":"rest","amount":60}"#)
        fixture.cluster.views["us-east"]!.setReachable(false)

        let response = try await fixture.send("POST", Self.reservationsPath, body: #"{"requestId":"cut","amount":10}"#)

        #expect(response.status == 503)
        let problem = try Self.json(response)
        #expect(problem["type"] == .string("urn:homeport:problem:quota-store-unavailable"))
        #expect(problem["reason"] == .string("store-unavailable"))
        #expect(problem["detail"]?.stringValue?.contains("fails closed") == true)
    }

    @Test func amountOverLimitIsUnprocessable() async throws {
        let fixture = try await Fixture()

        let response = try await fixture.send("POST", Self.reservationsPath, body: #"{"requestId":"huge","amount":1001}"#)

        #expect(response.status == 422)
        #expect(try Self.json(response)["reason"] == .string("amount-exceeds-limit"))
    }

    @Test func tenantWithoutPolicyIsNotFound() async throws {
        let fixture = try await Fixture()

        let reserve = try await fixture.send("POST", "/v1/tenants/other/quota/reservations", body: #"{"requestId":"a","amount":1}"#)
        let status = try await fixture.send("GET", "/v1/tenants/other/quota")

        #expect(reserve.status == 404)
        #expect(try Self.json(reserve)["type"] == .string("urn:homeport:problem:quota-not-found"))
        #expect(status.status == 404)
    }

    // MARK: Commit and release

    @Test func commitReturnsUnused() async throws {
        let fixture = try await Fixture()

        let response = try await fixture.send("POST", Self.reservationsPath + "/held-1/commit", body: #"{"used":15}"#)
        let again = try await fixture.send("POST", Self.reservationsPath + "/held-1/commit", body: #"{"used":15}"#)

        #expect(response.status == 200)
        let body = try Self.json(response)
        #expect(body["state"] == .string("committed"))
        #expect(body["used"] == .integer(15))
        #expect(body["returned"] == .integer(25))
        #expect(again.status == 200)
        #expect(again.header(QuotaRequestHandler.replayedHeader) == "true")
    }

    @Test(
        arguments: [
            ("", 400, "malformed-json", nil),
            ("{}", 400, "missing-field", "used"),
            (#"{"used":"5"}"#, 400, "wrong-type", "used"),
            (#"{"used":-1}"#, 400, "invalid-value", "used"),
            (#"{"used":1.5}"#, 400, "invalid-value", "used"),
            (#"{"used":5,"note":"x"}"#, 400, "unknown-field", "note"),
            (#"{"used":41}"#, 422, "used-exceeds-reserved", "used"),
        ] as [(String, Int, String, String?)])
    func badCommitIsRejected(body: String, status: Int, code: String, field: String?) async throws {
        let fixture = try await Fixture()
        let before = try await fixture.snapshot()

        let response = try await fixture.send("POST", Self.reservationsPath + "/held-1/commit", body: body)

        #expect(response.status == status)
        let problem = try Self.json(response)
        #expect(problem["type"] == .string("urn:homeport:problem:" + code))
        #expect(problem["field"]?.stringValue == field)
        #expect(try await fixture.snapshot() == before)
    }

    @Test func usedOverReservedNamesBothValues() async throws {
        let fixture = try await Fixture()

        let response = try await fixture.send("POST", Self.reservationsPath + "/held-1/commit", body: #"{"used":41}"#)

        let detail = try #require(try Self.json(response)["detail"]?.stringValue)
        #expect(detail.contains("used 41"))
        #expect(detail.contains("40 tokens reserved"))
    }

    @Test func unknownReservationIsNotFound() async throws {
        let fixture = try await Fixture()
        let before = try await fixture.snapshot()

        let commit = try await fixture.send("POST", Self.reservationsPath + "/nope/commit", body: #"{"used":1}"#)
        let release = try await fixture.send("DELETE", Self.reservationsPath + "/nope")
        let read = try await fixture.send("GET", Self.reservationsPath + "/nope")

        for response in [commit, release, read] {
            #expect(response.status == 404)
            #expect(try Self.json(response)["field"] == .string("requestId"))
        }
        #expect(try await fixture.snapshot() == before)
    }

    @Test func releaseThenCommitConflicts() async throws {
        let fixture = try await Fixture()

        let release = try await fixture.send("DELETE", Self.reservationsPath + "/held-1")
        let commit = try await fixture.send("POST", Self.reservationsPath + "/held-1/commit", body: #"{"used":1}"#)
        let read = try await fixture.send("GET", Self.reservationsPath + "/held-1")

        #expect(release.status == 200)
        #expect(try Self.json(release)["returned"] == .integer(40))
        #expect(commit.status == 409)
        #expect(try Self.json(commit)["type"] == .string("urn:homeport:problem:reservation-not-held"))
        #expect(try Self.json(read)["state"] == .string("released"))
    }

    // MARK: Status

    @Test func statusReportsTheAudit() async throws {
        let fixture = try await Fixture()
        _ = try await fixture.send("POST", Self.reservationsPath, body: #"{"requestId":"two","amount":10}"#)

        let response = try await fixture.send("GET", Self.quotaPath)

        #expect(response.status == 200)
        let body = try Self.json(response)
        #expect(body["limit"] == .integer(1000))
        #expect(body["consumed"] == .integer(0))
        #expect(body["outstanding"] == .integer(100))
        #expect(body["remaining"] == .integer(900))
        #expect(body["chunks"]?["us-east"]?["size"] == .integer(100))
        #expect(body["chunks"]?["us-east"]?["leaseLive"] == .bool(true))
        #expect(body["overspend"] == .integer(0))
        #expect(body["storeReachable"] == .bool(true))
        #expect(body["failOpen"]?["admittedHereThisPeriod"] == .integer(0))
        let local = try #require(body["local"])
        #expect(local["granted"] == .integer(2))
        #expect(local["servedFromChunk"] == .integer(1))
        #expect(local["servedFromStore"] == .integer(1))
        #expect(local["chunkShare"] == .number(0.5))
        #expect(local["denied"]?["limit-reached"] == .integer(0))
        #expect(local["chunk"]?["available"] == .integer(50))
    }
}
