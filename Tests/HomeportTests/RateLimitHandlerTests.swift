import Testing

@testable import Homeport

@Suite("Rate-limit API")
struct RateLimitHandlerTests {
    static let path = "/v1/tenants/acme/rate-limit"

    @Test("set, read and check a limit")
    func setAndCheck() async throws {
        let api = try GlobalStateAPI()

        let set = await api.send("PUT", Self.path, body: #"{"requestsPerWindow": 2, "windowSeconds": 60}"#)
        let read = await api.send("GET", Self.path)

        #expect(set.status == 200)
        let setting = try JSONValue.parse(set.body)
        #expect(setting["tenant"] == .string("acme"))
        #expect(setting["requestsPerWindow"] == .integer(2))
        #expect(setting["windowSeconds"] == .integer(60))
        #expect(setting["stamp"]?["region"] == .string("us-east"))
        #expect(try JSONValue.parse(read.body) == setting)

        let first = await api.send("POST", "\(Self.path)/check")
        let second = await api.send("POST", "\(Self.path)/check", body: "{}")
        let third = await api.send("POST", "\(Self.path)/check")

        let windowStart = RateLimitWindow.containing(api.cluster.now, tenant: TenantID("acme")!, windowSeconds: 60).startMilliseconds
        #expect(first.status == 200)
        #expect(
            try JSONValue.parse(first.body)
                == .object([
                    "admitted": .bool(true), "count": .integer(1), "limit": .integer(2), "windowSeconds": .integer(60),
                    "windowStart": .integer(windowStart),
                ]))
        #expect(try JSONValue.parse(second.body)["count"] == .integer(2))
        #expect(try Problem(third) == Problem(429, "rate-limited", field: "tenant"))
        #expect(third.header("Retry-After") == "60")
    }

    @Test("unlimited tenant is admitted")
    func unlimitedTenant() async throws {
        let api = try GlobalStateAPI()

        let check = await api.send("POST", "/v1/tenants/other/rate-limit/check")
        let read = await api.send("GET", "/v1/tenants/other/rate-limit")

        #expect(check.status == 200)
        #expect(try JSONValue.parse(check.body) == .object(["admitted": .bool(true), "limit": .null]))
        #expect(try Problem(read) == Problem(404, "rate-limit-not-found", field: "tenant"))
    }

    @Test("zero requests per window rejects all")
    func zeroLimit() async throws {
        let api = try GlobalStateAPI()
        _ = await api.send("PUT", Self.path, body: #"{"requestsPerWindow": 0, "windowSeconds": 1}"#)

        let check = await api.send("POST", "\(Self.path)/check")

        #expect(try Problem(check) == Problem(429, "rate-limited", field: "tenant"))
        #expect(check.header("Retry-After") == "1")
    }

    @Test("bad settings name the field")
    func badSettings() async throws {
        let api = try GlobalStateAPI()
        let cases: [(String?, [String: String], Problem)] = [
            (nil, [:], Problem(400, "malformed-json")),
            ("[]", [:], Problem(400, "wrong-type")),
            (#"{"windowSeconds": 60}"#, [:], Problem(400, "missing-field", field: "requestsPerWindow")),
            (#"{"requestsPerWindow": 10}"#, [:], Problem(400, "missing-field", field: "windowSeconds")),
            (#"{"requestsPerWindow": -1, "windowSeconds": 60}"#, [:], Problem(400, "invalid-value", field: "requestsPerWindow")),
            (#"{"requestsPerWindow": 1000000001, "windowSeconds": 60}"#, [:], Problem(400, "invalid-value", field: "requestsPerWindow")),
            (#"{"requestsPerWindow": 1.5, "windowSeconds": 60}"#, [:], Problem(400, "invalid-value", field: "requestsPerWindow")),
            (#"{"requestsPerWindow": "10", "windowSeconds": 60}"#, [:], Problem(400, "wrong-type", field: "requestsPerWindow")),
            (#"{"requestsPerWindow": 10, "windowSeconds": 0}"#, [:], Problem(400, "invalid-value", field: "windowSeconds")),
            (#"{"requestsPerWindow": 10, "windowSeconds": 86401}"#, [:], Problem(400, "invalid-value", field: "windowSeconds")),
            (#"{"requestsPerWindow": 10, "windowSeconds": true}"#, [:], Problem(400, "wrong-type", field: "windowSeconds")),
            (#"{"requestsPerWindow": 10, "windowSeconds": 60, "burst": 5}"#, [:], Problem(400, "unknown-field", field: "burst")),
            (#"{"requestsPerWindow": 10, "windowSeconds": 60}"#, ["dryRun": "1"], Problem(400, "invalid-query-parameter", field: "dryRun")),
        ]
        for (body, query, expected) in cases {
            let response = await api.send("PUT", Self.path, body: body, query: query)
            #expect(try Problem(response) == expected, "body \(body ?? "none") query \(query)")
        }
        #expect(api.registers.count == 0)
    }

    @Test("bad checks and reads name the field")
    func badChecks() async throws {
        let api = try GlobalStateAPI()
        _ = await api.send("PUT", Self.path, body: #"{"requestsPerWindow": 5, "windowSeconds": 60}"#)

        let extraField = await api.send("POST", "\(Self.path)/check", body: #"{"cost": 3}"#)
        let notObject = await api.send("POST", "\(Self.path)/check", body: "3")
        let query = await api.send("POST", "\(Self.path)/check", query: ["cost": "3"])
        let readBody = await api.send("GET", Self.path, body: "{}")
        let badTenant = await api.send("POST", "/v1/tenants/-acme/rate-limit/check")

        #expect(try Problem(extraField) == Problem(400, "unknown-field", field: "cost"))
        #expect(try Problem(notObject) == Problem(400, "wrong-type"))
        #expect(try Problem(query) == Problem(400, "invalid-query-parameter", field: "cost"))
        #expect(try Problem(readBody) == Problem(400, "invalid-value", field: "body"))
        #expect(try Problem(badTenant) == Problem(400, "invalid-path-parameter", field: "tenant"))
        // None of the rejected checks was counted.
        let window = RateLimitWindow.containing(api.cluster.now, tenant: TenantID("acme")!, windowSeconds: 60)
        #expect(api.cluster.counters("us-east").counts(of: window).isEmpty)
    }

    @Test("counts exchange merges and replies")
    func countsExchange() async throws {
        let api = try GlobalStateAPI()
        _ = await api.send("PUT", Self.path, body: #"{"requestsPerWindow": 5, "windowSeconds": 60}"#)
        _ = await api.send("POST", "\(Self.path)/check")
        let start = RateLimitWindow.containing(api.cluster.now, tenant: TenantID("acme")!, windowSeconds: 60).startMilliseconds
        let body = #"{"windows": [{"tenant": "acme", "windowSeconds": 60, "windowStart": \#(start), "counts": {"us-west": 3}}]}"#

        let response = await api.sendSigned(RateLimiter.countsPath, body: body)

        #expect(response.status == 200)
        let reply = try RateLimitCountsMessage(jsonBytes: response.body, maximumWindows: 10)
        #expect(reply.windows.map(\.counts) == [["us-east": 1, "us-west": 3]])
        let check = await api.send("POST", "\(Self.path)/check")
        #expect(try JSONValue.parse(check.body)["count"] == .integer(5))
        let rejected = await api.send("POST", "\(Self.path)/check")
        #expect(rejected.status == 429)
    }
}
