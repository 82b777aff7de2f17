import Testing

@testable import Homeport

/// The billing routes, called in process with `HTTPRequest` values, as
/// `RegionNode` will call them.
@Suite struct BillingRequestHandlerTests {
    /// Calls the handler and maps a thrown error to its problem response, as the node does.
    static func respond(_ handler: BillingRequestHandler, _ request: HTTPRequest) async -> HTTPResponse {
        do {
            guard let route = try BillingRequestHandler.route(method: request.method, path: request.path) else {
                return ProblemDetails.from(RequestError(.routeNotFound, detail: "not a billing route")).response()
            }
            return try await handler.handle(route, request: request)
        } catch {
            return ProblemDetails.from(error).response()
        }
    }

    static func post(_ tenant: String, _ body: String, query: [String: String] = [:]) -> HTTPRequest {
        HTTPRequest(method: "POST", path: "/v1/tenants/\(tenant)/usage", query: query, body: Array(body.utf8))
    }

    static func makeHandler(store: any LinearizableStore = EmbeddedLinearizableStore()) throws -> BillingRequestHandler {
        BillingRequestHandler(recorder: try BillingFixture.makeRecorder(region: "us-east", store: store))
    }

    static func body(_ response: HTTPResponse) throws -> JSONValue {
        try JSONValue.parse(response.body)
    }

    // MARK: Routes

    @Test func routesParse() throws {
        #expect(try BillingRequestHandler.route(method: "POST", path: "/v1/tenants/acme/usage") == .recordUsage(TenantID("acme")!))
        #expect(try BillingRequestHandler.route(method: "GET", path: "/v1/tenants/acme/usage/totals") == .readTotals(TenantID("acme")!))
    }

    @Test func otherPathsAreNotBillingRoutes() throws {
        for path in [
            "/healthz", "/v1/tenants/acme/sessions", "/v1/tenants/acme", "/v1/tenants/acme/sessions/s1/usage", "/v2/tenants/acme/usage",
        ] {
            #expect(try BillingRequestHandler.route(method: "GET", path: path) == nil, "\(path)")
        }
    }

    @Test func wrongMethodIs405WithAllow() async throws {
        let handler = try Self.makeHandler()
        let cases: [(method: String, path: String, allowed: String)] = [
            ("GET", "/v1/tenants/acme/usage", "POST"),
            ("PUT", "/v1/tenants/acme/usage", "POST"),
            ("POST", "/v1/tenants/acme/usage/totals", "GET"),
            ("DELETE", "/v1/tenants/acme/usage/totals", "GET"),
        ]
        for (method, path, allowed) in cases {
            let response = await Self.respond(handler, HTTPRequest(method: method, path: path))
            #expect(response.status == 405, "\(method) \(path)")
            #expect(response.header("Allow") == allowed, "\(method) \(path)")
        }
    }

    @Test func unknownPathUnderUsageIs404() async throws {
        let handler = try Self.makeHandler()
        for path in ["/v1/tenants/acme/usage/", "/v1/tenants/acme/usage/records", "/v1/tenants/acme/usage/totals/x"] {
            let response = await Self.respond(handler, HTTPRequest(method: "GET", path: path))
            #expect(response.status == 404, "\(path)")
            #expect(try Self.body(response)["type"]?.stringValue == "urn:homeport:problem:route-not-found", "\(path)")
        }
    }

    @Test func invalidTenantNamesTheField() async throws {
        let handler = try Self.makeHandler()
        for tenant in ["Acme", "-acme", "a%2Fb", String(repeating: "a", count: 65)] {
            for request in [
                Self.post(tenant, #"{"requestId":"r1","tokens":1}"#),
                HTTPRequest(method: "GET", path: "/v1/tenants/\(tenant)/usage/totals"),
            ] {
                let response = await Self.respond(handler, request)
                #expect(response.status == 400, "\(tenant)")
                #expect(try Self.body(response)["field"]?.stringValue == "tenant", "\(tenant)")
            }
        }
    }

    // MARK: Recording

    @Test func newRecordIs202() async throws {
        let handler = try Self.makeHandler()
        let response = await Self.respond(handler, Self.post("acme", #"{"requestId":"req-1","tokens":42,"model":"llama-3-8b"}"#))

        #expect(response.status == 202)
        let body = try Self.body(response)
        #expect(body["tenant"]?.stringValue == "acme")
        #expect(body["requestId"]?.stringValue == "req-1")
        #expect(body["tokens"]?.integerValue == 42)
        #expect(body["model"]?.stringValue == "llama-3-8b")
        #expect(body["region"]?.stringValue == "us-east")
        #expect(body["flushed"]?.boolValue == false)
        #expect(handler.recorder.unflushedRecordCount == 1)
    }

    @Test func duplicateIs200WithFirstRecord() async throws {
        let handler = try Self.makeHandler()
        _ = await Self.respond(handler, Self.post("acme", #"{"requestId":"req-1","tokens":42}"#))

        let pending = await Self.respond(handler, Self.post("acme", #"{"requestId":"req-1","tokens":42}"#))
        #expect(pending.status == 200)
        #expect(pending.header("Idempotent-Replayed") == "true")
        #expect(try Self.body(pending)["flushed"]?.boolValue == false)

        try await handler.recorder.flush()
        let flushed = await Self.respond(handler, Self.post("acme", #"{"requestId":"req-1","tokens":42}"#))
        #expect(flushed.status == 200)
        #expect(try Self.body(flushed)["flushed"]?.boolValue == true)
        #expect(try Self.body(flushed)["tokens"]?.integerValue == 42)
    }

    @Test func sameRequestIDWithOtherNumbersIs409() async throws {
        let handler = try Self.makeHandler()
        _ = await Self.respond(handler, Self.post("acme", #"{"requestId":"req-1","tokens":42}"#))

        for body in [#"{"requestId":"req-1","tokens":43}"#, #"{"requestId":"req-1","tokens":42,"model":"m"}"#] {
            let response = await Self.respond(handler, Self.post("acme", body))
            #expect(response.status == 409, "\(body)")
            #expect(try Self.body(response)["type"]?.stringValue == "urn:homeport:problem:usage-request-conflict", "\(body)")
        }

        // The same request id under another tenant is another record.
        let other = await Self.respond(handler, Self.post("globex", #"{"requestId":"req-1","tokens":43}"#))
        #expect(other.status == 202)
    }

    @Test func fullBufferIs503() async throws {
        let recorder = try BillingFixture.makeRecorder(region: "us-east", store: EmbeddedLinearizableStore()) {
            $0.maximumPendingRecords = 2
        }
        let handler = BillingRequestHandler(recorder: recorder)
        _ = await Self.respond(handler, Self.post("acme", #"{"requestId":"req-1","tokens":1}"#))
        _ = await Self.respond(handler, Self.post("acme", #"{"requestId":"req-2","tokens":1}"#))

        let full = await Self.respond(handler, Self.post("acme", #"{"requestId":"req-3","tokens":1}"#))
        #expect(full.status == 503)
        #expect(try Self.body(full)["type"]?.stringValue == "urn:homeport:problem:usage-buffer-full")

        // A duplicate still gets the first record, and a flush makes room.
        let duplicate = await Self.respond(handler, Self.post("acme", #"{"requestId":"req-1","tokens":1}"#))
        #expect(duplicate.status == 200)
        try await recorder.flush()
        let accepted = await Self.respond(handler, Self.post("acme", #"{"requestId":"req-3","tokens":1}"#))
        #expect(accepted.status == 202)
    }

    /// Each bad body gives a 4xx problem naming the field at fault.
    @Test(
        "bad record body names the field",
        arguments: [
            (#""#, 400, nil),
            (#"not json"#, 400, nil),
            (#"[1]"#, 400, nil),
            (#"{"tokens":1}"#, 400, "requestId"),
            (#"{"requestId":7,"tokens":1}"#, 400, "requestId"),
            (#"{"requestId":"","tokens":1}"#, 400, "requestId"),
            (#"{"requestId":"a/b","tokens":1}"#, 400, "requestId"),
            (#"{"requestId":"a b","tokens":1}"#, 400, "requestId"),
            (#"{"requestId":"..","tokens":1}"#, 400, "requestId"),
            ("{\"requestId\":\"\(String(repeating: "r", count: 129))\",\"tokens\":1}", 400, "requestId"),
            (#"{"requestId":"r1"}"#, 400, "tokens"),
            (#"{"requestId":"r1","tokens":-1}"#, 400, "tokens"),
            (#"{"requestId":"r1","tokens":10000001}"#, 400, "tokens"),
            (#"{"requestId":"r1","tokens":1.5}"#, 400, "tokens"),
            (#"{"requestId":"r1","tokens":"5"}"#, 400, "tokens"),
            (#"{"requestId":"r1","tokens":1,"model":""}"#, 400, "model"),
            (#"{"requestId":"r1","tokens":1,"model":"a b"}"#, 400, "model"),
            (#"{"requestId":"r1","tokens":1,"model":3}"#, 400, "model"),
            ("{\"requestId\":\"r1\",\"tokens\":1,\"model\":\"\(String(repeating: "m", count: 129))\"}", 400, "model"),
            (#"{"requestId":"r1","tokens":1,"tenant":"acme"}"#, 400, "tenant"),
            (#"{"requestId":"r1","tokens":1,"promptTokens":1}"#, 400, "promptTokens"),
        ] as [(String, Int, String?)])
    func badRecordBody(_ body: String, _ status: Int, _ field: String?) async throws {
        let handler = try Self.makeHandler()
        let response = await Self.respond(handler, Self.post("acme", body))

        #expect(response.status == status)
        #expect(response.header("Content-Type") == "application/problem+json")
        #expect(try Self.body(response)["field"]?.stringValue == field)
        #expect(handler.recorder.unflushedRecordCount == 0)
    }

    @Test func queryParametersAreRejected() async throws {
        let handler = try Self.makeHandler()
        let requests = [
            Self.post("acme", #"{"requestId":"r1","tokens":1}"#, query: ["flush": "true"]),
            HTTPRequest(method: "GET", path: "/v1/tenants/acme/usage/totals", query: ["flush": "true"]),
        ]
        for request in requests {
            let response = await Self.respond(handler, request)
            #expect(response.status == 400, "\(request.method)")
            #expect(try Self.body(response)["field"]?.stringValue == "flush", "\(request.method)")
        }
    }

    // MARK: Totals

    @Test func totalsFlushThenRead() async throws {
        let store = EmbeddedLinearizableStore()
        let handler = try Self.makeHandler(store: store)
        _ = await Self.respond(handler, Self.post("acme", #"{"requestId":"req-1","tokens":40}"#))
        _ = await Self.respond(handler, Self.post("acme", #"{"requestId":"req-2","tokens":2}"#))
        _ = await Self.respond(handler, Self.post("acme", #"{"requestId":"req-2","tokens":2}"#))
        _ = await Self.respond(handler, Self.post("globex", #"{"requestId":"req-1","tokens":1000}"#))

        let response = await Self.respond(handler, HTTPRequest(method: "GET", path: "/v1/tenants/acme/usage/totals"))
        #expect(response.status == 200)
        let body = try Self.body(response)
        #expect(body["tenant"]?.stringValue == "acme")
        #expect(body["tokens"]?.integerValue == 42)
        #expect(body["records"]?.integerValue == 2)
        #expect(body["unflushedRecords"]?.integerValue == 0)
        let revision = try await store.currentRevision()
        #expect(body["asOfRevision"]?.integerValue == revision)

        // Only the tenant read was flushed.
        #expect(handler.recorder.unflushedRecordCount(of: TenantID("globex")!) == 1)

        let unknown = await Self.respond(handler, HTTPRequest(method: "GET", path: "/v1/tenants/initech/usage/totals"))
        #expect(unknown.status == 200)
        #expect(try Self.body(unknown)["tokens"]?.integerValue == 0)
        #expect(try Self.body(unknown)["records"]?.integerValue == 0)
    }

    @Test func billingErrorsMapToStatuses() {
        let cases: [(code: BillingError.Code, status: Int)] = [
            (.invalidRecord, 400), (.requestConflict, 409), (.bufferFull, 503), (.storeUnavailable, 503), (.contention, 503),
            (.storeFailed, 502), (.totalsOverflow, 500), (.logFailed, 500), (.invalidConfiguration, 500),
        ]
        for (code, status) in cases {
            let problem = ProblemDetails.from(BillingError(code, field: "tokens", "detail of \(code.rawValue)"))
            #expect(problem.status == status, "\(code)")
            #expect(problem.type == code.rawValue)
            #expect(problem.detail == "detail of \(code.rawValue)")
            #expect(problem.field == "tokens")
        }
    }

    @Test func totalsWithBodyIs400() async throws {
        let handler = try Self.makeHandler()
        let response = await Self.respond(
            handler, HTTPRequest(method: "GET", path: "/v1/tenants/acme/usage/totals", body: Array("{}".utf8)))
        #expect(response.status == 400)
        #expect(try Self.body(response)["field"]?.stringValue == "body")
    }

    @Test func unreachableStoreIs503OnTotals() async throws {
        let view = PartitionableStoreView(EmbeddedLinearizableStore())
        let handler = try Self.makeHandler(store: view)
        _ = await Self.respond(handler, Self.post("acme", #"{"requestId":"req-1","tokens":40}"#))

        view.setReachable(false)
        let recorded = await Self.respond(handler, Self.post("acme", #"{"requestId":"req-2","tokens":2}"#))
        #expect(recorded.status == 202)
        let response = await Self.respond(handler, HTTPRequest(method: "GET", path: "/v1/tenants/acme/usage/totals"))
        #expect(response.status == 503)
        #expect(try Self.body(response)["type"]?.stringValue == "urn:homeport:problem:billing-store-unavailable")
        #expect(handler.recorder.unflushedRecordCount == 2)
    }
}
