import Foundation
import Testing

@testable import Homeport

/// Two regions, us-east and eu-west, each serving on its own 127.0.0.1
/// ephemeral port, and a raw HTTP client that reaches them over loopback.
private struct TwoRegions {
    let cluster: EmbeddedCluster
    let http: HTTPClient

    func port(of region: String) throws -> UInt16 {
        try #require(cluster.node(region)).port
    }

    func store(of region: String) throws -> any SessionStore {
        try #require(cluster.node(region)).store
    }

    /// Sends one request to `region`'s node, with `token` in the `Homeport-Route` header.
    func send(
        _ method: String, _ path: String, to region: String = "us-east", query: [String: String] = [:],
        token: String? = nil, headers: [String: String] = [:], body: String? = nil
    ) async throws -> HTTPResponse {
        var request = HTTPRequest(method: method, path: path, query: query, headers: headers)
        if let token { request.headers[RegionNode.routeHeader] = token }
        if let body {
            request.headers["Content-Type"] = "application/json"
            request.body = Array(body.utf8)
        }
        return try await http.send(request, host: "127.0.0.1", port: try port(of: region))
    }

    /// Creates a session homed at `region` and returns its id and routing token.
    func createSession(at region: String = "us-east", tenant: String = "acme") async throws -> (id: SessionID, token: String) {
        let response = try await send("POST", "/v1/tenants/\(tenant)/sessions", to: region, body: "{}")
        try #require(response.status == 201)
        let body = try JSONValue.parse(response.body)
        let id = try #require(body["session"]?.stringValue.flatMap(SessionID.init))
        let token = try #require(body["token"]?.stringValue)
        return (id, token)
    }

    func sessionPath(_ id: SessionID, tenant: String = "acme", _ suffix: String = "") -> String {
        "/v1/tenants/\(tenant)/sessions/\(id)\(suffix)"
    }
}

/// Starts two regions with 5 ms between them, runs `body`, and shuts the
/// regions down whether or not `body` throws.
///
/// A forward sleeps on `clock` for the latency, so a test that passes a
/// `ManualClock` must send every session request to the session's home.
private func withTwoRegions(clock: any WallClock = SystemClock(), _ body: (TwoRegions) async throws -> Void) async throws {
    let topology = try RegionTopology(
        regions: [
            RegionEndpoint(name: "us-east", host: "127.0.0.1", port: 0),
            RegionEndpoint(name: "eu-west", host: "127.0.0.1", port: 0),
        ],
        latency: LatencyMatrix(oneWay: [RegionPair("us-east", "eu-west"): .milliseconds(5)], jitterFraction: 0))
    var http = HTTPServerConfiguration()
    http.host = "127.0.0.1"
    http.port = 0
    let cluster = try EmbeddedCluster(
        topology: topology, keyRing: try TokenKeyRing.generated(), clock: clock,
        logger: Logger(label: "session-api-tests", sink: .discarding), http: http,
        // The manual clock jumps past TTLs, and with them any lease it would not renew.
        lease: nil)
    try await cluster.start()

    let regions = TwoRegions(cluster: cluster, http: HTTPClient(timeout: .seconds(10), maximumConcurrentExchanges: 2))
    do {
        try await body(regions)
    } catch {
        await cluster.shutdown()
        throw error
    }
    await cluster.shutdown()
}

private func parseJSON(_ response: HTTPResponse) throws -> JSONValue {
    try JSONValue.parse(response.body)
}

private func problemType(_ response: HTTPResponse) throws -> String? {
    try parseJSON(response)["type"]?.stringValue
}

private func turnBody(role: String, content: String, tokens: Int, metadata: String? = nil) -> String {
    let metadataField = metadata.map { ",\"metadata\":\($0)" } ?? ""
    return "{\"role\":\"\(role)\",\"content\":\"\(content)\",\"tokens\":\(tokens)\(metadataField)}"
}

@Suite
struct SessionAPITests {
    @Test func createSessionReturnsToken() async throws {
        try await withTwoRegions { regions in
            let response = try await regions.send("POST", "/v1/tenants/acme/sessions", body: "{}")

            #expect(response.status == 201)
            #expect(response.header("Content-Type") == "application/json")
            #expect(response.header(RegionNode.servedByHeader) == "us-east")
            let body = try parseJSON(response)
            let id = try #require(body["session"]?.stringValue)
            #expect(SessionID(id) != nil)
            #expect(body["tenant"]?.stringValue == "acme")
            #expect(body["home"]?.stringValue == "us-east")
            #expect(body["epoch"]?.integerValue == 1)
            #expect(body["lastSeq"]?.integerValue == 0)
            #expect(body["turnCount"]?.integerValue == 0)
            let token = try #require(body["token"]?.stringValue)
            #expect(response.header(RegionNode.routeHeader) == token)

            let claims = try regions.cluster.keyRing.verify(token, nowSeconds: SystemClock().nowMilliseconds() / 1000)
            #expect(claims.session.rawValue == id)
            #expect(claims.tenant.rawValue == "acme")
            #expect(claims.home == "us-east")
            #expect(claims.epoch == 1)
            #expect(body["tokenExpiresAt"]?.integerValue == claims.expiresAt)
        }
    }

    @Test func createSessionAcceptsEmptyBody() async throws {
        try await withTwoRegions { regions in
            let response = try await regions.send("POST", "/v1/tenants/acme/sessions")

            #expect(response.status == 201)
            #expect(try parseJSON(response)["epoch"]?.integerValue == 1)
        }
    }

    @Test func describeSessionReturnsCounts() async throws {
        try await withTwoRegions { regions in
            let session = try await regions.createSession()
            let appended = try await regions.send(
                "POST", regions.sessionPath(session.id, "/turns"), token: session.token,
                body: turnBody(role: "user", content: "hello", tokens: 2))
            try #require(appended.status == 201)

            let response = try await regions.send("GET", regions.sessionPath(session.id), token: session.token)

            #expect(response.status == 200)
            let body = try parseJSON(response)
            #expect(body["session"]?.stringValue == session.id.rawValue)
            #expect(body["home"]?.stringValue == "us-east")
            #expect(body["epoch"]?.integerValue == 1)
            #expect(body["lastSeq"]?.integerValue == 1)
            #expect(body["turnCount"]?.integerValue == 1)
            #expect(body["bufferBytes"]?.integerValue == 5)
        }
    }

    @Test func appendedTurnsReadInOrder() async throws {
        try await withTwoRegions { regions in
            let session = try await regions.createSession()
            let turnsPath = regions.sessionPath(session.id, "/turns")

            let user = try await regions.send(
                "POST", turnsPath, token: session.token,
                body: turnBody(role: "user", content: "What is a KV cache?", tokens: 6, metadata: "{\"source\":\"chat\"}"))
            #expect(user.status == 201)
            #expect(user.header("Idempotent-Replayed") == nil)
            let userTurn = try #require(try parseJSON(user)["turn"])
            #expect(userTurn["seq"]?.integerValue == 1)
            #expect(userTurn["epoch"]?.integerValue == 1)
            #expect(userTurn["role"]?.stringValue == "user")
            #expect(userTurn["contentBytes"]?.integerValue == 19)
            #expect(try parseJSON(user)["replayed"]?.boolValue == false)

            let assistant = try await regions.send(
                "POST", turnsPath, token: session.token,
                body: turnBody(role: "assistant", content: "Stored attention keys and values.", tokens: 7))
            #expect(assistant.status == 201)
            #expect(try parseJSON(assistant)["turn"]?["seq"]?.integerValue == 2)

            let all = try parseJSON(try await regions.send("GET", turnsPath, token: session.token))
            let turns = try #require(all["turns"]?.arrayValue)
            #expect(turns.map { $0["seq"]?.integerValue } == [1, 2])
            #expect(turns.map { $0["role"]?.stringValue } == ["user", "assistant"])
            #expect(turns.map { $0["content"]?.stringValue } == ["What is a KV cache?", "Stored attention keys and values."])
            #expect(turns.map { $0["tokens"]?.integerValue } == [6, 7])
            #expect(turns.first?["metadata"] == .object(["source": .string("chat")]))
            #expect(turns.last?["metadata"] == .object([:]))
            #expect(all["lastSeq"]?.integerValue == 2)
            #expect(all["turnCount"]?.integerValue == 2)
            #expect(all["epoch"]?.integerValue == 1)

            let tail = try parseJSON(try await regions.send("GET", turnsPath, query: ["tail": "1"], token: session.token))
            #expect(tail["turns"]?.arrayValue?.map { $0["seq"]?.integerValue } == [2])
            #expect(tail["turnCount"]?.integerValue == 2)

            let sinceFirst = try parseJSON(try await regions.send("GET", turnsPath, query: ["sinceSeq": "1"], token: session.token))
            #expect(sinceFirst["turns"]?.arrayValue?.map { $0["seq"]?.integerValue } == [2])

            let sinceStart = try parseJSON(try await regions.send("GET", turnsPath, query: ["sinceSeq": "0"], token: session.token))
            #expect(sinceStart["turns"]?.arrayValue?.map { $0["seq"]?.integerValue } == [1, 2])

            let sinceLast = try parseJSON(try await regions.send("GET", turnsPath, query: ["sinceSeq": "2"], token: session.token))
            #expect(sinceLast["turns"]?.arrayValue?.isEmpty == true)
        }
    }

    @Test func appendRetryIsReplayed() async throws {
        try await withTwoRegions { regions in
            let session = try await regions.createSession()
            let turnsPath = regions.sessionPath(session.id, "/turns")
            let turn = turnBody(role: "user", content: "Summarise the thread.", tokens: 4)

            let first = try await regions.send(
                "POST", turnsPath, token: session.token, headers: ["Idempotency-Key": "append-1"], body: turn)
            #expect(first.status == 201)
            let firstTurn = try #require(try parseJSON(first)["turn"])
            #expect(firstTurn["seq"]?.integerValue == 1)
            #expect(firstTurn["idempotencyKey"]?.stringValue == "append-1")

            let retry = try await regions.send(
                "POST", turnsPath, token: session.token, headers: ["Idempotency-Key": "append-1"], body: turn)
            #expect(retry.status == 200)
            #expect(retry.header("Idempotent-Replayed") == "true")
            let retryBody = try parseJSON(retry)
            #expect(retryBody["replayed"]?.boolValue == true)
            #expect(retryBody["turn"] == firstTurn)

            let read = try parseJSON(try await regions.send("GET", turnsPath, token: session.token))
            #expect(read["turns"]?.arrayValue?.count == 1)
            #expect(read["turnCount"]?.integerValue == 1)
            #expect(read["lastSeq"]?.integerValue == 1)
        }
    }

    @Test func appendRetryWithKeyInBodyIsReplayed() async throws {
        try await withTwoRegions { regions in
            let session = try await regions.createSession()
            let turnsPath = regions.sessionPath(session.id, "/turns")
            let turn = "{\"role\":\"user\",\"content\":\"hi\",\"tokens\":1,\"idempotencyKey\":\"body-key\"}"

            let first = try await regions.send("POST", turnsPath, token: session.token, body: turn)
            let retry = try await regions.send(
                "POST", turnsPath, token: session.token, headers: ["Idempotency-Key": "body-key"], body: turn)

            #expect(first.status == 201)
            #expect(retry.status == 200)
            #expect(retry.header("Idempotent-Replayed") == "true")
            #expect(try parseJSON(retry)["turn"]?["seq"]?.integerValue == 1)
            #expect(try await regions.store(of: "us-east").sessionInfo(session.id).turnCount == 1)
        }
    }

    @Test func reusedIdempotencyKeyIsRejected() async throws {
        try await withTwoRegions { regions in
            let session = try await regions.createSession()
            let turnsPath = regions.sessionPath(session.id, "/turns")
            let first = try await regions.send(
                "POST", turnsPath, token: session.token, headers: ["Idempotency-Key": "append-1"],
                body: turnBody(role: "user", content: "first question", tokens: 2))
            try #require(first.status == 201)

            let reused = try await regions.send(
                "POST", turnsPath, token: session.token, headers: ["Idempotency-Key": "append-1"],
                body: turnBody(role: "user", content: "another question", tokens: 2))

            #expect(reused.status == 422)
            #expect(reused.header("Content-Type") == "application/problem+json")
            #expect(try problemType(reused) == "urn:homeport:problem:idempotency-key-reused")
            #expect(try parseJSON(reused)["detail"]?.stringValue?.contains("append-1") == true)
            let read = try parseJSON(try await regions.send("GET", turnsPath, token: session.token))
            #expect(read["turns"]?.arrayValue?.map { $0["content"]?.stringValue } == ["first question"])
        }
    }

    @Test func reusedIdempotencyKeyWithOtherMetadataIsRejected() async throws {
        try await withTwoRegions { regions in
            let session = try await regions.createSession()
            let turnsPath = regions.sessionPath(session.id, "/turns")
            let first = try await regions.send(
                "POST", turnsPath, token: session.token, headers: ["Idempotency-Key": "append-1"],
                body: turnBody(role: "user", content: "same text", tokens: 2, metadata: "{\"lang\":\"en\"}"))
            try #require(first.status == 201)

            let reused = try await regions.send(
                "POST", turnsPath, token: session.token, headers: ["Idempotency-Key": "append-1"],
                body: turnBody(role: "user", content: "same text", tokens: 2, metadata: "{\"lang\":\"fr\"}"))

            // Metadata is part of the turn, so different metadata is a different turn.
            let reusedType = try problemType(reused)
            #expect(reused.status == 422)
            #expect(reusedType == "urn:homeport:problem:idempotency-key-reused")
            let read = try parseJSON(try await regions.send("GET", turnsPath, token: session.token))
            #expect(read["turns"]?.arrayValue?.count == 1)
            #expect(read["turns"]?.arrayValue?.first?["metadata"] == .object(["lang": .string("en")]))
        }
    }

    @Test func ledgerStatusMovesForwardOnly() async throws {
        try await withTwoRegions { regions in
            let session = try await regions.createSession()
            let entryPath = regions.sessionPath(session.id, "/ledger/call-1")

            let requested = try await regions.send(
                "PUT", entryPath, token: session.token,
                body: "{\"name\":\"web_search\",\"arguments\":{\"query\":\"raft\"},\"status\":\"requested\"}")
            #expect(requested.status == 200)
            let requestedBody = try parseJSON(requested)
            #expect(requestedBody["applied"]?.boolValue == true)
            #expect(requestedBody["entry"]?["status"]?.stringValue == "requested")
            #expect(requestedBody["entry"]?["name"]?.stringValue == "web_search")
            #expect(requestedBody["entry"]?["seq"]?.integerValue == 1)

            let running = try parseJSON(try await regions.send("PUT", entryPath, token: session.token, body: "{\"status\":\"running\"}"))
            #expect(running["applied"]?.boolValue == true)
            #expect(running["entry"]?["status"]?.stringValue == "running")
            #expect(running["entry"]?["seq"]?.integerValue == 2)

            let succeeded = try await regions.send(
                "PUT", entryPath, token: session.token, body: "{\"status\":\"succeeded\",\"result\":{\"hits\":3}}")
            #expect(succeeded.status == 200)
            let succeededBody = try parseJSON(succeeded)
            #expect(succeededBody["applied"]?.boolValue == true)
            #expect(succeededBody["entry"]?["status"]?.stringValue == "succeeded")
            #expect(succeededBody["entry"]?["seq"]?.integerValue == 3)

            let lateRunning = try await regions.send("PUT", entryPath, token: session.token, body: "{\"status\":\"running\"}")
            #expect(lateRunning.status == 200)
            let lateBody = try parseJSON(lateRunning)
            #expect(lateBody["applied"]?.boolValue == false)
            #expect(lateBody["entry"]?["status"]?.stringValue == "succeeded")
            #expect(lateBody["entry"]?["seq"]?.integerValue == 3)

            let failed = try await regions.send("PUT", entryPath, token: session.token, body: "{\"status\":\"failed\"}")
            #expect(failed.status == 409)
            #expect(try problemType(failed) == "urn:homeport:problem:ledger-conflict")

            let entry = try await regions.send("GET", entryPath, token: session.token)
            #expect(entry.status == 200)
            let entryBody = try parseJSON(entry)
            #expect(entryBody["callId"]?.stringValue == "call-1")
            #expect(entryBody["name"]?.stringValue == "web_search")
            #expect(entryBody["status"]?.stringValue == "succeeded")
            #expect(entryBody["arguments"] == .object(["query": .string("raft")]))
            #expect(entryBody["result"] == .object(["hits": .integer(3)]))
            #expect(entryBody["epoch"]?.integerValue == 1)
            #expect(entryBody["seq"]?.integerValue == 3)
        }
    }

    @Test func ledgerListIsOrderedByCallID() async throws {
        try await withTwoRegions { regions in
            let session = try await regions.createSession()
            for callID in ["call-b", "call-a"] {
                let response = try await regions.send(
                    "PUT", regions.sessionPath(session.id, "/ledger/\(callID)"), token: session.token,
                    body: "{\"name\":\"calculator\",\"status\":\"requested\"}")
                try #require(response.status == 200)
            }

            let response = try await regions.send("GET", regions.sessionPath(session.id, "/ledger"), token: session.token)

            #expect(response.status == 200)
            let entries = try #require(try parseJSON(response)["entries"]?.arrayValue)
            #expect(entries.map { $0["callId"]?.stringValue } == ["call-a", "call-b"])
            #expect(entries.map { $0["seq"]?.integerValue } == [2, 1])
            #expect(entries.allSatisfy { $0["arguments"] == .null })
        }
    }

    @Test func unknownLedgerEntryIsNotFound() async throws {
        try await withTwoRegions { regions in
            let session = try await regions.createSession()

            let response = try await regions.send("GET", regions.sessionPath(session.id, "/ledger/call-9"), token: session.token)

            #expect(response.status == 404)
            #expect(try problemType(response) == "urn:homeport:problem:entry-not-found")
        }
    }

    @Test func kvCacheRefsStoredAndRead() async throws {
        let clock = ManualClock()
        try await withTwoRegions(clock: clock) { regions in
            let session = try await regions.createSession()
            let refsPath = regions.sessionPath(session.id, "/kv-refs")

            let put = try await regions.send(
                "PUT", refsPath, token: session.token,
                body: "{\"refs\":[{\"block\":9,\"location\":\"gpu-4\"},{\"block\":7,\"location\":\"gpu-3\"}],\"ttlSeconds\":60}")

            #expect(put.status == 200)
            let stored = try #require(try parseJSON(put)["refs"]?.arrayValue)
            #expect(stored.map { $0["block"]?.integerValue } == [9, 7])
            #expect(stored.map { $0["seq"]?.integerValue } == [1, 1])
            #expect(stored.map { $0["expiresAt"]?.integerValue } == Array(repeating: clock.nowMilliseconds() + 60_000, count: 2))

            let list = try await regions.send("GET", refsPath, token: session.token)
            #expect(list.status == 200)
            let refs = try #require(try parseJSON(list)["refs"]?.arrayValue)
            #expect(refs.map { $0["block"]?.integerValue } == [7, 9])
            #expect(refs.map { $0["location"]?.stringValue } == ["gpu-3", "gpu-4"])

            let single = try await regions.send("GET", regions.sessionPath(session.id, "/kv-refs/7"), token: session.token)
            #expect(single.status == 200)
            let singleBody = try parseJSON(single)
            #expect(singleBody["block"]?.integerValue == 7)
            #expect(singleBody["location"]?.stringValue == "gpu-3")
            #expect(singleBody["epoch"]?.integerValue == 1)
        }
    }

    @Test func kvCacheRefsExpireAfterTTL() async throws {
        let clock = ManualClock()
        try await withTwoRegions(clock: clock) { regions in
            let session = try await regions.createSession()
            let refsPath = regions.sessionPath(session.id, "/kv-refs")
            let put = try await regions.send(
                "PUT", refsPath, token: session.token, body: "{\"refs\":[{\"block\":7,\"location\":\"gpu-3\"}],\"ttlSeconds\":60}")
            try #require(put.status == 200)

            clock.advance(by: .milliseconds(59_999))
            let lastMillisecond = try await regions.send("GET", regions.sessionPath(session.id, "/kv-refs/7"), token: session.token)
            #expect(lastMillisecond.status == 200)

            clock.advance(by: .milliseconds(1))
            let expired = try await regions.send("GET", regions.sessionPath(session.id, "/kv-refs/7"), token: session.token)
            #expect(expired.status == 404)
            #expect(try problemType(expired) == "urn:homeport:problem:entry-not-found")
            let list = try await regions.send("GET", refsPath, token: session.token)
            #expect(try parseJSON(list)["refs"]?.arrayValue?.isEmpty == true)
        }
    }

    @Test func unknownKVCacheBlockIsNotFound() async throws {
        try await withTwoRegions { regions in
            let session = try await regions.createSession()
            let put = try await regions.send(
                "PUT", regions.sessionPath(session.id, "/kv-refs"), token: session.token,
                body: "{\"refs\":[{\"block\":7,\"location\":\"gpu-3\"}]}")
            try #require(put.status == 200)

            let response = try await regions.send("GET", regions.sessionPath(session.id, "/kv-refs/8"), token: session.token)

            #expect(response.status == 404)
            #expect(response.header("Content-Type") == "application/problem+json")
            #expect(try problemType(response) == "urn:homeport:problem:entry-not-found")
            #expect(try parseJSON(response)["detail"]?.stringValue?.contains("block 8") == true)
        }
    }

    @Test func valuesStoredAndRead() async throws {
        try await withTwoRegions { regions in
            let session = try await regions.createSession()
            let modelPath = regions.sessionPath(session.id, "/values/model")

            let put = try await regions.send(
                "PUT", modelPath, token: session.token, body: "{\"value\":{\"name\":\"llama-3\",\"temperature\":0.5}}")
            #expect(put.status == 200)
            let putBody = try parseJSON(put)
            #expect(putBody["name"]?.stringValue == "model")
            #expect(putBody["seq"]?.integerValue == 1)

            let alpha = try await regions.send(
                "PUT", regions.sessionPath(session.id, "/values/alpha"), token: session.token, body: "{\"value\":[1,2]}")
            #expect(alpha.status == 200)

            let overwrite = try await regions.send(
                "PUT", modelPath, token: session.token, body: "{\"value\":{\"name\":\"llama-3\",\"temperature\":0.2}}")
            #expect(overwrite.status == 200)
            #expect(try parseJSON(overwrite)["seq"]?.integerValue == 3)

            let read = try await regions.send("GET", modelPath, token: session.token)
            #expect(read.status == 200)
            let readBody = try parseJSON(read)
            #expect(readBody["value"] == .object(["name": .string("llama-3"), "temperature": .number(0.2)]))
            #expect(readBody["seq"]?.integerValue == 3)
            #expect(readBody["epoch"]?.integerValue == 1)

            let list = try await regions.send("GET", regions.sessionPath(session.id, "/values"), token: session.token)
            #expect(list.status == 200)
            let values = try #require(try parseJSON(list)["values"]?.arrayValue)
            #expect(values.map { $0["name"]?.stringValue } == ["alpha", "model"])
            #expect(values.first?["value"] == .array([.integer(1), .integer(2)]))

            let missing = try await regions.send("GET", regions.sessionPath(session.id, "/values/absent"), token: session.token)
            #expect(missing.status == 404)
            #expect(try problemType(missing) == "urn:homeport:problem:entry-not-found")
        }
    }

    @Test func healthCheckReturnsOK() async throws {
        try await withTwoRegions { regions in
            for region in ["us-east", "eu-west"] {
                let response = try await regions.send("GET", "/healthz", to: region)

                #expect(response.status == 200)
                let body = try parseJSON(response)
                #expect(body["status"]?.stringValue == "ok")
                #expect(body["region"]?.stringValue == region)
            }
        }
    }

    @Test func metricsArePrometheusText() async throws {
        try await withTwoRegions { regions in
            let session = try await regions.createSession(at: "us-east")
            let forwarded = try await regions.send(
                "POST", regions.sessionPath(session.id, "/turns"), to: "eu-west", token: session.token,
                body: turnBody(role: "user", content: "hi", tokens: 1))
            try #require(forwarded.status == 201)

            let response = try await regions.send("GET", "/metrics", to: "eu-west")

            #expect(response.status == 200)
            #expect(response.header("Content-Type") == "text/plain; version=0.0.4")
            let text = String(decoding: response.body, as: UTF8.self)
            let lines = Set(text.split(separator: "\n").map(String.init))
            #expect(lines.contains("# TYPE homeport_operation_duration_seconds histogram"))
            #expect(lines.contains("# TYPE homeport_forwarded_total counter"))
            #expect(lines.contains("homeport_forwarded_total{region=\"eu-west\",home=\"us-east\"} 1"))
            #expect(text.contains("homeport_operation_duration_seconds_bucket{"))
            #expect(
                lines.contains(
                    "homeport_operation_duration_seconds_bucket{region=\"eu-west\",kind=\"conversation_buffer\",operation=\"append\",path=\"forwarded\",le=\"+Inf\"} 1"
                ))
            #expect(
                lines.contains(
                    "homeport_operation_duration_seconds_count{region=\"us-east\",kind=\"conversation_buffer\",operation=\"append\",path=\"local\"} 1"
                ))
            #expect(
                lines.contains(
                    "homeport_requests_total{region=\"us-east\",kind=\"session\",operation=\"create\",path=\"local\",status=\"201\"} 1"
                ))
        }
    }

    @Test func requestAtOtherRegionIsForwardedHome() async throws {
        try await withTwoRegions { regions in
            let session = try await regions.createSession(at: "us-east")
            let turnsPath = regions.sessionPath(session.id, "/turns")

            let appended = try await regions.send(
                "POST", turnsPath, to: "eu-west", token: session.token, headers: ["Homeport-Request-Id": "trace-42"],
                body: turnBody(role: "user", content: "routed through eu-west", tokens: 3))
            #expect(appended.status == 201)
            #expect(appended.header(RegionNode.servedByHeader) == "us-east")
            #expect(appended.header(RegionNode.requestIDHeader) == "trace-42")
            #expect(try parseJSON(appended)["turn"]?["seq"]?.integerValue == 1)

            let readElsewhere = try await regions.send("GET", turnsPath, to: "eu-west", query: ["tail": "1"], token: session.token)
            #expect(readElsewhere.status == 200)
            #expect(readElsewhere.header(RegionNode.servedByHeader) == "us-east")
            #expect(try parseJSON(readElsewhere)["turns"]?.arrayValue?.count == 1)

            let readAtHome = try await regions.send("GET", turnsPath, to: "us-east", token: session.token)
            #expect(readAtHome.header(RegionNode.servedByHeader) == "us-east")
            let turns = try #require(try parseJSON(readAtHome)["turns"]?.arrayValue)
            #expect(turns.map { $0["content"]?.stringValue } == ["routed through eu-west"])

            let id = session.id
            #expect(try await regions.store(of: "us-east").sessionInfo(id).turnCount == 1)
            let remoteStore = try regions.store(of: "eu-west")
            let error = await #expect(throws: SessionStoreError.self) {
                try await remoteStore.sessionInfo(id)
            }
            #expect(error?.code == .sessionNotFound)
        }
    }

    @Test func forwardedRetryIsReplayed() async throws {
        try await withTwoRegions { regions in
            let session = try await regions.createSession(at: "us-east")
            let turnsPath = regions.sessionPath(session.id, "/turns")
            let turn = turnBody(role: "user", content: "retry me", tokens: 2)

            let first = try await regions.send(
                "POST", turnsPath, to: "eu-west", token: session.token, headers: ["Idempotency-Key": "k-7"], body: turn)
            let retry = try await regions.send(
                "POST", turnsPath, to: "eu-west", token: session.token, headers: ["Idempotency-Key": "k-7"], body: turn)

            #expect(first.status == 201)
            #expect(retry.status == 200)
            #expect(retry.header("Idempotent-Replayed") == "true")
            #expect(try parseJSON(retry)["turn"]?["seq"]?.integerValue == 1)
            #expect(try await regions.store(of: "us-east").sessionInfo(session.id).turnCount == 1)
        }
    }

    @Test func forwardedErrorKeepsProblemDetails() async throws {
        try await withTwoRegions { regions in
            let session = try await regions.createSession(at: "us-east")

            let response = try await regions.send(
                "POST", regions.sessionPath(session.id, "/turns"), to: "eu-west", token: session.token,
                body: "{\"role\":\"user\",\"content\":\"hi\",\"tokens\":\"one\"}")

            #expect(response.status == 400)
            #expect(response.header("Content-Type") == "application/problem+json")
            let body = try parseJSON(response)
            #expect(body["type"]?.stringValue == "urn:homeport:problem:wrong-type")
            #expect(body["field"]?.stringValue == "tokens")
            #expect(body["region"]?.stringValue == "us-east")
        }
    }

    @Test func forwardedRequestAtNonHomeIsLoop() async throws {
        try await withTwoRegions { regions in
            let session = try await regions.createSession(at: "us-east")

            let response = try await regions.send(
                "POST", regions.sessionPath(session.id, "/turns"), to: "eu-west", token: session.token,
                headers: [RegionNode.forwardedFromHeader: "us-west"], body: turnBody(role: "user", content: "hi", tokens: 1))

            #expect(response.status == 508)
            #expect(response.header("Content-Type") == "application/problem+json")
            let body = try parseJSON(response)
            #expect(body["type"]?.stringValue == "urn:homeport:problem:forwarding-loop")
            #expect(body["status"]?.integerValue == 508)
            #expect(body["region"]?.stringValue == "eu-west")
            #expect(body["detail"]?.stringValue?.contains("us-west") == true)
            #expect(try await regions.store(of: "us-east").sessionInfo(session.id).turnCount == 0)
            let forwardedCount = regions.cluster.metrics.value(
                "homeport_forwarded_total", labels: ["region": "eu-west", "home": "us-east"])
            #expect(forwardedCount == 0)
        }
    }

    @Test func unknownHomeRegionIsMisdirected() async throws {
        try await withTwoRegions { regions in
            let session = try await regions.createSession(at: "us-east")
            let now = SystemClock().nowMilliseconds() / 1000
            let token = regions.cluster.keyRing.sign(
                RoutingToken(
                    session: session.id, tenant: try #require(TenantID("acme")), home: "ap-south",
                    epoch: 1, issuedAt: now, expiresAt: now + 3600))

            for region in ["eu-west", "us-east"] {
                let response = try await regions.send(
                    "POST", regions.sessionPath(session.id, "/turns"), to: region, token: token,
                    body: turnBody(role: "user", content: "hi", tokens: 1))

                #expect(response.status == 421)
                #expect(response.header("Content-Type") == "application/problem+json")
                let body = try parseJSON(response)
                #expect(body["type"]?.stringValue == "urn:homeport:problem:unknown-home-region")
                #expect(body["detail"]?.stringValue?.contains("ap-south") == true)
            }
            #expect(try await regions.store(of: "us-east").sessionInfo(session.id).turnCount == 0)

            // A request that never reached a home is not counted as forwarded.
            let forwardedCount = regions.cluster.metrics.value(
                "homeport_forwarded_total", labels: ["region": "eu-west", "home": "ap-south"])
            #expect(forwardedCount == 0)
        }
    }
}
