import Testing

@testable import Homeport

/// The eventually-global API of us-east in a three-region cluster, called
/// directly with `HTTPRequest` values.
struct GlobalStateAPI {
    let cluster: GlobalStateCluster

    init(configuration: GlobalStateConfiguration = GlobalStateConfiguration()) throws {
        cluster = try GlobalStateCluster(configuration: configuration)
    }

    var handler: GlobalStateRequestHandler { cluster.node("us-east").handler }
    var registers: GlobalRegisterStore { cluster.registers("us-east") }

    func send(
        _ method: String, _ path: String, body: String? = nil, query: [String: String] = [:], headers: [String: String] = [:]
    ) async -> HTTPResponse {
        var request = HTTPRequest(method: method, path: path, query: query, headers: headers)
        if let body { request.body = Array(body.utf8) }
        guard let response = await handler.respond(to: request) else {
            Issue.record("\(method) \(path) is not routed to the global-state handler")
            return HTTPResponse(status: 0)
        }
        return response
    }

    /// Sends an internal request signed with `keyRing` (default: the
    /// cluster's), naming `sender` in `Homeport-Forwarded-From`.
    func sendSigned(_ path: String, body: String, from sender: String? = "us-west", keyRing: TokenKeyRing? = nil) async -> HTTPResponse {
        var headers = [PeerSignature.header.lowercased(): PeerSignature.sign(Array(body.utf8), with: keyRing ?? cluster.keyRing)]
        if let sender { headers[RegionNode.forwardedFromHeader.lowercased()] = sender }
        return await send("POST", path, body: body, headers: headers)
    }
}

/// The parts of a problem+json response a test checks.
struct Problem: Equatable, CustomStringConvertible {
    var status: Int
    var type: String
    var field: String?

    init(_ status: Int, _ type: String, field: String? = nil) {
        self.status = status
        self.type = type
        self.field = field
    }

    init(_ response: HTTPResponse) throws {
        #expect(response.header("Content-Type") == "application/problem+json")
        let body = try JSONValue.parse(response.body)
        status = response.status
        type = String((body["type"]?.stringValue ?? "").dropFirst(ProblemDetails.typePrefix.count))
        field = body["field"]?.stringValue
    }

    var description: String { "\(status) \(type) field=\(field ?? "nil")" }
}

@Suite("Global register API")
struct GlobalRegisterHandlerTests {
    @Test("routes outside the API are not taken")
    func foreignRoutes() throws {
        for (method, path) in [
            ("GET", "/healthz"), ("POST", "/v1/tenants/acme/sessions"), ("GET", "/v1/tenants/acme/sessions/abc/values"),
            ("POST", "/internal/v1/replication"), ("GET", "/v1/registersx"), ("GET", "/v1"),
        ] {
            #expect(try GlobalStateRequestHandler.route(method: method, path: path) == nil, "\(method) \(path)")
        }
        #expect(try GlobalStateRequestHandler.route(method: "PUT", path: "/v1/registers/w") == .writeRegister(name: "w"))
        #expect(
            try GlobalStateRequestHandler.route(method: "POST", path: "/v1/tenants/acme/rate-limit/check")
                == .checkRateLimit(TenantID("acme")!))
        #expect(try GlobalStateRequestHandler.route(method: "POST", path: "/internal/v1/rate-limits/counts") == .exchangeRateLimitCounts)
    }

    @Test("bad paths and methods")
    func badRoutes() async throws {
        let api = try GlobalStateAPI()
        let cases: [(String, String, Problem)] = [
            ("GET", "/v1/registers/a/b", Problem(404, "route-not-found")),
            ("DELETE", "/v1/registers/weights", Problem(405, "method-not-allowed", field: "method")),
            ("POST", "/v1/registers", Problem(405, "method-not-allowed", field: "method")),
            ("GET", "/v1/registers/bad name", Problem(400, "invalid-path-parameter", field: "name")),
            ("GET", "/v1/registers/", Problem(400, "invalid-path-parameter", field: "name")),
            ("GET", "/v1/registers/..", Problem(400, "invalid-path-parameter", field: "name")),
            ("PUT", "/v1/tenants/ACME/rate-limit", Problem(400, "invalid-path-parameter", field: "tenant")),
            ("GET", "/v1/tenants/acme/rate-limit/other", Problem(404, "route-not-found")),
            ("GET", "/v1/tenants/acme/rate-limit/check", Problem(405, "method-not-allowed", field: "method")),
            ("POST", "/v1/tenants/acme/rate-limit", Problem(405, "method-not-allowed", field: "method")),
            ("GET", "/internal/v1/registers/push", Problem(405, "method-not-allowed", field: "method")),
            ("POST", "/internal/v1/registers/other", Problem(404, "route-not-found")),
            ("POST", "/internal/v1/rate-limits", Problem(404, "route-not-found")),
        ]
        for (method, path, expected) in cases {
            let response = await api.send(method, path)
            #expect(try Problem(response) == expected, "\(method) \(path)")
        }
        let notAllowed = await api.send("DELETE", "/v1/registers/weights")
        #expect(notAllowed.header("Allow") == "GET, PUT")
    }

    @Test("write, read and list a register")
    func writeAndRead() async throws {
        let api = try GlobalStateAPI()

        let written = await api.send("PUT", "/v1/registers/router-weights", body: #"{"value": {"llama-70b": 0.7, "mistral-7b": 0.3}}"#)
        let read = await api.send("GET", "/v1/registers/router-weights")
        let list = await api.send("GET", "/v1/registers")

        #expect(written.status == 200)
        let entry = try JSONValue.parse(written.body)
        #expect(entry["name"] == .string("router-weights"))
        #expect(entry["value"] == .object(["llama-70b": .number(0.7), "mistral-7b": .number(0.3)]))
        #expect(entry["stamp"]?["region"] == .string("us-east"))
        #expect(entry["stamp"]?["physicalMilliseconds"] == .integer(api.cluster.now))
        #expect(entry["stamp"]?["logical"] == .integer(0))
        #expect(read.status == 200)
        #expect(try JSONValue.parse(read.body) == entry)
        #expect(try JSONValue.parse(list.body) == .object(["registers": .array([entry])]))
    }

    @Test("bad register writes are rejected")
    func badWrites() async throws {
        let api = try GlobalStateAPI(
            configuration: GlobalStateConfiguration(registerLimits: .init(maximumRegisters: 1, maximumValueBytes: 64)))
        let path = "/v1/registers/router-weights"
        let cases: [(String?, [String: String], Problem)] = [
            (nil, [:], Problem(400, "malformed-json")),
            ("{", [:], Problem(400, "malformed-json")),
            ("[1]", [:], Problem(400, "wrong-type")),
            ("{}", [:], Problem(400, "missing-field", field: "value")),
            (#"{"value": 1, "ttl": 5}"#, [:], Problem(400, "unknown-field", field: "ttl")),
            (#"{"value": 1}"#, ["region": "eu-west"], Problem(400, "invalid-query-parameter", field: "region")),
            (#"{"value": "\#(String(repeating: "x", count: 80))"}"#, [:], Problem(413, "register-value-too-large", field: "value")),
        ]
        for (body, query, expected) in cases {
            let response = await api.send("PUT", path, body: body, query: query)
            #expect(try Problem(response) == expected, "body \(body ?? "none") query \(query)")
        }
        #expect(api.registers.count == 0)

        let reserved = await api.send("PUT", "/v1/registers/rate-limit:acme", body: #"{"value": 1}"#)
        #expect(try Problem(reserved) == Problem(400, "invalid-path-parameter", field: "name"))

        let first = await api.send("PUT", "/v1/registers/a", body: #"{"value": null}"#)
        let second = await api.send("PUT", "/v1/registers/b", body: #"{"value": null}"#)
        #expect(first.status == 200)
        #expect(try Problem(second) == Problem(409, "register-limit-reached", field: "name"))
    }

    @Test("bad register reads are rejected")
    func badReads() async throws {
        let api = try GlobalStateAPI()

        let missing = await api.send("GET", "/v1/registers/router-weights")
        let withBody = await api.send("GET", "/v1/registers/router-weights", body: "{}")
        let listQuery = await api.send("GET", "/v1/registers", query: ["prefix": "router"])

        #expect(try Problem(missing) == Problem(404, "register-not-found", field: "name"))
        #expect(try Problem(withBody) == Problem(400, "invalid-value", field: "body"))
        #expect(try Problem(listQuery) == Problem(400, "invalid-query-parameter", field: "prefix"))
    }

    @Test("signed push is applied")
    func signedPush() async throws {
        let api = try GlobalStateAPI()
        let body =
            #"{"entries": [{"name": "router-weights", "value": {"llama-70b": 1}, "stamp": {"physicalMilliseconds": 1800000000000, "logical": 2, "region": "us-west"}}]}"#

        let response = await api.sendSigned(GlobalRegisterReplicator.pushPath, body: body)

        #expect(response.status == 200)
        #expect(try JSONValue.parse(response.body) == .object(["applied": .integer(1), "stale": .integer(0), "rejected": .array([])]))
        #expect(api.registers.entry("router-weights")?.stamp == registerStamp(1_800_000_000_000, 2, "us-west"))
    }

    @Test("bad peer signatures are rejected")
    func badSignatures() async throws {
        let api = try GlobalStateAPI()
        let body =
            #"{"entries": [{"name": "router-weights", "value": 1, "stamp": {"physicalMilliseconds": 1800000000000, "logical": 0, "region": "us-west"}}]}"#
        let otherKeys = try TokenKeyRing.generated()
        let tampered = body.replacingOccurrences(of: #""value": 1"#, with: #""value": 2"#)
        let tamperedSignature = PeerSignature.sign(Array(body.utf8), with: api.cluster.keyRing)

        for path in [GlobalRegisterReplicator.pushPath, GlobalRegisterReplicator.digestPath, RateLimiter.countsPath] {
            let unsigned = await api.send("POST", path, body: body, headers: [RegionNode.forwardedFromHeader.lowercased(): "us-west"])
            let foreignKey = await api.sendSigned(path, body: body, keyRing: otherKeys)
            let changedBody = await api.send(
                "POST", path, body: tampered,
                headers: [PeerSignature.header.lowercased(): tamperedSignature, RegionNode.forwardedFromHeader.lowercased(): "us-west"])
            let garbage = await api.send(
                "POST", path, body: body,
                headers: [PeerSignature.header.lowercased(): "k1.not-base64!", RegionNode.forwardedFromHeader.lowercased(): "us-west"])

            let expected = Problem(401, "peer-signature-invalid", field: PeerSignature.header)
            #expect(try Problem(unsigned) == expected, "unsigned \(path)")
            #expect(try Problem(foreignKey) == expected, "foreign key \(path)")
            #expect(try Problem(changedBody) == expected, "changed body \(path)")
            #expect(try Problem(garbage) == expected, "garbage signature \(path)")

            let noSender = await api.sendSigned(path, body: body, from: nil)
            let unknownSender = await api.sendSigned(path, body: body, from: "ap-south")
            let itself = await api.sendSigned(path, body: body, from: "us-east")
            #expect(try Problem(noSender) == Problem(400, "missing-field", field: RegionNode.forwardedFromHeader), "no sender \(path)")
            #expect(try Problem(unknownSender) == Problem(403, "unknown-peer", field: RegionNode.forwardedFromHeader), "unknown \(path)")
            #expect(try Problem(itself) == Problem(403, "unknown-peer", field: RegionNode.forwardedFromHeader), "itself \(path)")
        }
        #expect(api.registers.count == 0)
    }

    @Test("bad internal bodies name the field")
    func badInternalBodies() async throws {
        let api = try GlobalStateAPI()
        let stamp = #"{"physicalMilliseconds": 1800000000000, "logical": 0, "region": "us-west"}"#
        let push = GlobalRegisterReplicator.pushPath
        let digest = GlobalRegisterReplicator.digestPath
        let counts = RateLimiter.countsPath
        let cases: [(String, String, Problem)] = [
            (push, "{}", Problem(400, "missing-field", field: "entries")),
            (push, #"{"entries": {}}"#, Problem(400, "wrong-type", field: "entries")),
            (push, #"{"entries": [], "repair": "yes"}"#, Problem(400, "wrong-type", field: "repair")),
            (push, #"{"entries": [], "extra": 1}"#, Problem(400, "unknown-field", field: "extra")),
            (
                push, #"{"entries": [{"name": "a b", "value": 1, "stamp": \#(stamp)}]}"#,
                Problem(400, "invalid-value", field: "entries[0].name")
            ),
            (push, #"{"entries": [{"name": "a", "stamp": \#(stamp)}]}"#, Problem(400, "missing-field", field: "entries[0].value")),
            (
                push, #"{"entries": [{"name": "a", "value": 1, "stamp": \#(stamp), "ttl": 1}]}"#,
                Problem(400, "unknown-field", field: "entries[0].ttl")
            ),
            (
                push,
                #"{"entries": [{"name": "a", "value": 1, "stamp": {"physicalMilliseconds": 1, "logical": -1, "region": "us-west"}}]}"#,
                Problem(400, "invalid-value", field: "entries[0].stamp.logical")
            ),
            (
                push, #"{"entries": [{"name": "a", "value": 1, "stamp": {"physicalMilliseconds": 1, "logical": 0, "region": "US West"}}]}"#,
                Problem(400, "invalid-value", field: "entries[0].stamp.region")
            ),
            (
                push,
                #"{"entries": [{"name": "a", "value": 1, "stamp": {"physicalMilliseconds": "1", "logical": 0, "region": "us-west"}}]}"#,
                Problem(400, "wrong-type", field: "entries[0].stamp.physicalMilliseconds")
            ),
            (digest, #"{"entries": []}"#, Problem(400, "missing-field", field: "digest")),
            (digest, #"{"digest": [], "entries": []}"#, Problem(400, "wrong-type", field: "digest")),
            (digest, #"{"digest": {"a b": \#(stamp)}, "entries": []}"#, Problem(400, "invalid-value", field: "digest.a b")),
            (
                digest, #"{"digest": {"a": {"logical": 0, "region": "us-west"}}, "entries": []}"#,
                Problem(400, "missing-field", field: "digest.a.physicalMilliseconds")
            ),
            (
                counts, #"{"windows": [{"tenant": "Acme", "windowSeconds": 60, "windowStart": 0, "counts": {}}]}"#,
                Problem(400, "invalid-value", field: "windows[0].tenant")
            ),
            (
                counts, #"{"windows": [{"tenant": "acme", "windowSeconds": 0, "windowStart": 0, "counts": {}}]}"#,
                Problem(400, "invalid-value", field: "windows[0].windowSeconds")
            ),
            (
                counts, #"{"windows": [{"tenant": "acme", "windowSeconds": 60, "windowStart": 1000, "counts": {}}]}"#,
                Problem(400, "invalid-value", field: "windows[0].windowStart")
            ),
            (
                counts, #"{"windows": [{"tenant": "acme", "windowSeconds": 60, "windowStart": 0, "counts": {"us-west": -1}}]}"#,
                Problem(400, "invalid-value", field: "windows[0].counts.us-west")
            ),
            (
                counts, #"{"windows": [{"tenant": "acme", "windowSeconds": 60, "windowStart": 0, "counts": {"US": 1}}]}"#,
                Problem(400, "invalid-value", field: "windows[0].counts.US")
            ),
            (
                counts, #"{"windows": [{"tenant": "acme", "windowSeconds": 60, "windowStart": 0}]}"#,
                Problem(400, "missing-field", field: "windows[0].counts")
            ),
        ]
        for (path, body, expected) in cases {
            let response = await api.sendSigned(path, body: body)
            #expect(try Problem(response) == expected, "\(path) \(body)")
        }
        #expect(api.registers.count == 0)
        #expect(api.cluster.counters("us-east").windowCount == 0)
    }

    @Test("digest reply carries both directions")
    func digestExchange() async throws {
        let api = try GlobalStateAPI()
        let local = try api.registers.write("only-here", value: .integer(1))
        let now = api.cluster.now
        let body = """
            {"digest": {"only-there": {"physicalMilliseconds": \(now), "logical": 0, "region": "us-west"}},
             "entries": [{"name": "pushed", "value": 2, "stamp": {"physicalMilliseconds": \(now), "logical": 1, "region": "us-west"}}]}
            """

        let response = await api.sendSigned(GlobalRegisterReplicator.digestPath, body: body)

        #expect(response.status == 200)
        let reply = try RegisterDigestReply(jsonBytes: response.body, maximumEntries: 100)
        #expect(reply.entries == [local])
        #expect(reply.requested == ["only-there"])
        #expect(reply.rejected == [])
        #expect(api.registers.entry("pushed")?.value == .integer(2))
        #expect(api.registers.statistics().repairs == 1)
    }
}
