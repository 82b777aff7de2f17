import Foundation
import Testing

@testable import Homeport

/// Everything a session holds, read straight from the store, to show that a
/// rejected request changed nothing.
private struct StoredSession: Equatable {
    var info: SessionInfo
    var turns: [Turn]
    var ledger: [LedgerEntry]
    var values: [SessionValue]
}

/// One region, us-east, serving on a 127.0.0.1 ephemeral port with a 4096-byte
/// body limit and a 1024-byte turn limit, on a manual clock. It contains one
/// session of tenant `acme` with a turn (seq 1), a ledger entry `call-1`
/// (seq 2) and a value `model` (seq 3).
private struct OneRegion {
    static let maximumBodyBytes = 4096
    static let maximumTurnBytes = 1024
    static let validTurn = "{\"role\":\"user\",\"content\":\"still here\",\"tokens\":2}"

    let cluster: EmbeddedCluster
    let clock: ManualClock
    let http: HTTPClient
    let session: SessionID
    let token: String

    var store: any SessionStore { cluster.nodes[0].store }
    var port: UInt16 { cluster.nodes[0].port }
    var sessionPath: String { "/v1/tenants/acme/sessions/\(session)" }

    /// Sends one request, replacing `{session}` in `path` with this session's id.
    func send(
        _ method: String, _ path: String, query: [String: String] = [:], token: String? = nil,
        headers: [String: String] = [:], body: String? = nil
    ) async throws -> HTTPResponse {
        let resolvedPath = path.replacingOccurrences(of: "{session}", with: session.rawValue)
        var request = HTTPRequest(method: method, path: resolvedPath, query: query, headers: headers)
        if let token { request.headers[RegionNode.routeHeader] = token }
        if let body {
            request.headers["Content-Type"] = "application/json"
            request.body = Array(body.utf8)
        }
        return try await http.send(request, host: "127.0.0.1", port: port)
    }

    /// Creates another session of `tenant` and returns its id and token.
    func createSession(tenant: String = "acme") async throws -> (id: SessionID, token: String) {
        let response = try await send("POST", "/v1/tenants/\(tenant)/sessions", body: "{}")
        try #require(response.status == 201)
        let body = try JSONValue.parse(response.body)
        let id = try #require(body["session"]?.stringValue.flatMap(SessionID.init))
        let token = try #require(body["token"]?.stringValue)
        return (id, token)
    }

    func snapshot() async throws -> StoredSession {
        StoredSession(
            info: try await store.sessionInfo(session),
            turns: try await store.readTurns(session, .all).turns,
            ledger: try await store.ledgerEntries(session),
            values: try await store.values(session))
    }

    /// Signs claims for this session with the cluster's key, changing what `change` sets.
    func signToken(_ change: (inout RoutingToken) -> Void = { _ in }) throws -> String {
        let nowSeconds = clock.nowMilliseconds() / 1000
        var claims = RoutingToken(
            session: session, tenant: try #require(TenantID("acme")), home: "us-east", epoch: 1, issuedAt: nowSeconds,
            expiresAt: nowSeconds + 3600)
        change(&claims)
        return cluster.keyRing.sign(claims)
    }
}

/// Starts one region with one filled session, runs `body`, and shuts the
/// region down whether or not `body` throws.
private func withOneRegion(_ body: (OneRegion) async throws -> Void) async throws {
    let topology = try RegionTopology(
        regions: [RegionEndpoint(name: "us-east", host: "127.0.0.1", port: 0)], latency: .zero)
    var http = HTTPServerConfiguration()
    http.host = "127.0.0.1"
    http.port = 0
    http.maximumBodyBytes = OneRegion.maximumBodyBytes
    var limits = SessionStoreLimits()
    limits.maximumTurnBytes = OneRegion.maximumTurnBytes
    let clock = ManualClock()
    let cluster = try EmbeddedCluster(
        topology: topology, limits: limits, keyRing: try TokenKeyRing.generated(), clock: clock,
        logger: Logger(label: "bad-input-tests", sink: .discarding), http: http,
        // The manual clock jumps a day ahead, past any lease it would not renew.
        lease: nil)
    try await cluster.start()

    do {
        let client = HTTPClient(timeout: .seconds(10), maximumConcurrentExchanges: 2)
        let created = try await client.send(
            HTTPRequest(method: "POST", path: "/v1/tenants/acme/sessions"), host: "127.0.0.1", port: cluster.nodes[0].port)
        try #require(created.status == 201)
        let createdBody = try JSONValue.parse(created.body)
        let region = OneRegion(
            cluster: cluster, clock: clock, http: client,
            session: try #require(createdBody["session"]?.stringValue.flatMap(SessionID.init)),
            token: try #require(createdBody["token"]?.stringValue))

        let turn = try await region.send(
            "POST", "\(region.sessionPath)/turns", token: region.token,
            body: "{\"role\":\"user\",\"content\":\"first\",\"tokens\":1}")
        try #require(turn.status == 201)
        let ledger = try await region.send(
            "PUT", "\(region.sessionPath)/ledger/call-1", token: region.token,
            body: "{\"name\":\"web_search\",\"status\":\"requested\"}")
        try #require(ledger.status == 200)
        let value = try await region.send(
            "PUT", "\(region.sessionPath)/values/model", token: region.token, body: "{\"value\":\"llama-3\"}")
        try #require(value.status == 200)

        try await body(region)
    } catch {
        await cluster.shutdown()
        throw error
    }
    await cluster.shutdown()
}

/// Checks that `response` is a problem+json response with `status` and the
/// problem code `code`, whose detail contains every text of `detailMentions`.
/// Returns the parsed body.
@discardableResult
private func expectProblem(
    _ response: HTTPResponse, status: Int, code: String, field: String? = nil, detailMentions: [String] = [],
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> JSONValue {
    #expect(response.status == status, sourceLocation: sourceLocation)
    #expect((400..<500).contains(response.status), sourceLocation: sourceLocation)
    #expect(response.header("Content-Type") == "application/problem+json", sourceLocation: sourceLocation)
    if status == 401 {
        #expect(response.header("WWW-Authenticate") == RegionNode.routeHeader, sourceLocation: sourceLocation)
    }

    let body = try JSONValue.parse(response.body)
    #expect(body["type"]?.stringValue == ProblemDetails.typePrefix + code, sourceLocation: sourceLocation)
    #expect(body["status"]?.integerValue == Int64(status), sourceLocation: sourceLocation)
    #expect(body["title"]?.stringValue?.isEmpty == false, sourceLocation: sourceLocation)
    let detail = body["detail"]?.stringValue ?? ""
    #expect(!detail.isEmpty, sourceLocation: sourceLocation)
    for mention in detailMentions {
        #expect(detail.contains(mention), "detail: \(detail)", sourceLocation: sourceLocation)
    }
    if let field {
        #expect(body["field"]?.stringValue == field, sourceLocation: sourceLocation)
    }
    return body
}

/// Checks that `/healthz` still returns 200 and that the session is exactly
/// `before`, then that a valid append is stored as the next seq.
private func expectStillServing(
    _ region: OneRegion, unchangedFrom before: StoredSession, sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    let health = try await region.send("GET", "/healthz")
    #expect(health.status == 200, sourceLocation: sourceLocation)

    let after = try await region.snapshot()
    #expect(after == before, sourceLocation: sourceLocation)

    let append = try await region.send(
        "POST", "\(region.sessionPath)/turns", token: region.token, body: OneRegion.validTurn)
    #expect(append.status == 201, sourceLocation: sourceLocation)
    let seq = try JSONValue.parse(append.body)["turn"]?["seq"]?.integerValue
    #expect(seq == Int64(before.info.lastStamp.seq) + 1, sourceLocation: sourceLocation)
    #expect(try await region.store.sessionInfo(region.session).turnCount == before.info.turnCount + 1, sourceLocation: sourceLocation)
}

@Suite
struct BadInputTests {
    /// A request the API must reject, and the problem response it must get.
    struct BadRequest: Sendable, CustomTestStringConvertible {
        /// How the request carries its routing token.
        enum Token: Sendable {
            case session
            case none
            case text(String)
        }

        var label: String
        var method = "POST"
        /// `{session}` becomes the fixture session's id.
        var path = "/v1/tenants/acme/sessions/{session}/turns"
        var query: [String: String] = [:]
        var headers: [String: String] = [:]
        var token = Token.session
        var body: String?
        var status = 400
        var code: String
        var field: String?
        var detailMentions: [String] = []

        var testDescription: String { label }
    }

    /// Sends `request` on `region`, checks the problem it is answered with, and
    /// checks that nothing changed and the region still serves.
    private func expectRejected(
        _ request: BadRequest, on region: OneRegion, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let before = try await region.snapshot()
        let token: String? =
            switch request.token {
            case .session: region.token
            case .none: nil
            case .text(let text): text
            }

        let response = try await region.send(
            request.method, request.path, query: request.query, token: token, headers: request.headers, body: request.body)

        try expectProblem(
            response, status: request.status, code: request.code, field: request.field,
            detailMentions: request.detailMentions, sourceLocation: sourceLocation)
        try await expectStillServing(region, unchangedFrom: before, sourceLocation: sourceLocation)
    }

    // MARK: Bodies

    static let malformedBodies = [
        BadRequest(
            label: "truncated object", body: "{\"role\":\"user\",", code: "malformed-json",
            detailMentions: ["not valid JSON"]),
        BadRequest(
            label: "unquoted key", body: "{role:\"user\",\"content\":\"hi\",\"tokens\":1}", code: "malformed-json",
            detailMentions: ["not valid JSON", "expected a string key"]),
        BadRequest(
            label: "two documents", body: "{} {}", code: "malformed-json", detailMentions: ["unexpected data after the JSON value"]),
        BadRequest(
            label: "duplicate key", body: "{\"role\":\"user\",\"role\":\"tool\",\"content\":\"hi\",\"tokens\":1}",
            code: "malformed-json", detailMentions: ["duplicate key \"role\""]),
        BadRequest(
            label: "nesting 65 levels deep",
            body: "{\"role\":\"user\",\"content\":\"hi\",\"tokens\":1,\"metadata\":"
                + String(repeating: "[", count: 64) + String(repeating: "]", count: 64) + "}",
            code: "malformed-json", detailMentions: ["nesting deeper than 64 levels"]),
    ]

    @Test(arguments: malformedBodies)
    func malformedJSONIsRejected(_ request: BadRequest) async throws {
        try await withOneRegion { region in
            try await expectRejected(request, on: region)
        }
    }

    @Test func arrayBodyIsRejected() async throws {
        try await withOneRegion { region in
            try await expectRejected(
                BadRequest(
                    label: "array", body: "[{\"role\":\"user\",\"content\":\"hi\",\"tokens\":1}]", code: "wrong-type",
                    detailMentions: ["body must be a JSON object, got array"]),
                on: region)
        }
    }

    @Test func emptyAppendBodyIsRejected() async throws {
        try await withOneRegion { region in
            try await expectRejected(
                BadRequest(label: "empty body", body: "", code: "malformed-json", detailMentions: ["body is empty"]),
                on: region)
        }
    }

    @Test func appendWithoutBodyIsRejected() async throws {
        try await withOneRegion { region in
            try await expectRejected(
                BadRequest(label: "no body", body: nil, code: "malformed-json", detailMentions: ["body is empty"]),
                on: region)
        }
    }

    static let wrongTypes = [
        BadRequest(
            label: "tokens as string", body: "{\"role\":\"user\",\"content\":\"hi\",\"tokens\":\"5\"}", code: "wrong-type",
            field: "tokens", detailMentions: ["\"tokens\" must be an integer, got string"]),
        BadRequest(
            label: "role as number", body: "{\"role\":3,\"content\":\"hi\",\"tokens\":5}", code: "wrong-type",
            field: "role", detailMentions: ["\"role\" must be a string, got integer"]),
        BadRequest(
            label: "metadata value as number",
            body: "{\"role\":\"user\",\"content\":\"hi\",\"tokens\":5,\"metadata\":{\"lang\":1}}", code: "wrong-type",
            field: "metadata.lang", detailMentions: ["\"metadata.lang\" must be a string, got integer"]),
        BadRequest(
            label: "metadata as array", body: "{\"role\":\"user\",\"content\":\"hi\",\"tokens\":5,\"metadata\":[]}",
            code: "wrong-type", field: "metadata", detailMentions: ["\"metadata\" must be an object of strings, got array"]),
        BadRequest(
            label: "content as object", body: "{\"role\":\"user\",\"content\":{},\"tokens\":5}", code: "wrong-type",
            field: "content", detailMentions: ["\"content\" must be a string, got object"]),
    ]

    @Test(arguments: wrongTypes)
    func wrongFieldTypeIsRejected(_ request: BadRequest) async throws {
        try await withOneRegion { region in
            try await expectRejected(request, on: region)
        }
    }

    @Test func missingFieldIsRejected() async throws {
        try await withOneRegion { region in
            try await expectRejected(
                BadRequest(
                    label: "no content", body: "{\"role\":\"user\",\"tokens\":5}", code: "missing-field", field: "content",
                    detailMentions: ["\"content\" is required"]),
                on: region)
        }
    }

    @Test func unknownRoleIsRejected() async throws {
        try await withOneRegion { region in
            try await expectRejected(
                BadRequest(
                    label: "role robot", body: "{\"role\":\"robot\",\"content\":\"hi\",\"tokens\":5}", code: "invalid-value",
                    field: "role", detailMentions: ["\"robot\"", "system, user, assistant, tool"]),
                on: region)
        }
    }

    @Test func unknownBodyFieldIsRejected() async throws {
        try await withOneRegion { region in
            try await expectRejected(
                BadRequest(
                    label: "field colour", body: "{\"role\":\"user\",\"content\":\"hi\",\"tokens\":5,\"colour\":\"red\"}",
                    code: "unknown-field", field: "colour", detailMentions: ["unknown field \"colour\""]),
                on: region)
        }
    }

    static let outOfRangeTokenCounts = ["-1", "10000001", "1e30", "99999999999999999999"]

    @Test(arguments: outOfRangeTokenCounts)
    func outOfRangeTokenCountIsRejected(_ tokens: String) async throws {
        try await withOneRegion { region in
            try await expectRejected(
                BadRequest(
                    label: "tokens \(tokens)", body: "{\"role\":\"user\",\"content\":\"hi\",\"tokens\":\(tokens)}",
                    code: "invalid-value", field: "tokens", detailMentions: ["\"tokens\"", "0 to 10000000"]),
                on: region)
        }
    }

    static let invalidIdempotencyKeys = [
        BadRequest(
            label: "key with a space", headers: ["Idempotency-Key": "two words"], body: OneRegion.validTurn,
            code: "invalid-value", field: "idempotencyKey", detailMentions: ["printable ASCII"]),
        BadRequest(
            label: "header and field differ", headers: ["Idempotency-Key": "key-a"],
            body: "{\"role\":\"user\",\"content\":\"hi\",\"tokens\":5,\"idempotencyKey\":\"key-b\"}",
            code: "invalid-value", field: "idempotencyKey", detailMentions: ["differ"]),
    ]

    @Test(arguments: invalidIdempotencyKeys)
    func invalidIdempotencyKeyIsRejected(_ request: BadRequest) async throws {
        try await withOneRegion { region in
            try await expectRejected(request, on: region)
        }
    }

    // MARK: Query parameters

    static let invalidQueries = [
        BadRequest(
            label: "unknown parameter on append", query: ["debug": "1"], body: OneRegion.validTurn,
            code: "invalid-query-parameter", field: "debug", detailMentions: ["\"debug\""]),
        BadRequest(
            label: "unknown parameter on read", method: "GET", query: ["limit": "5"], code: "invalid-query-parameter",
            field: "limit", detailMentions: ["unknown query parameter \"limit\""]),
        BadRequest(
            label: "tail=0", method: "GET", query: ["tail": "0"], code: "invalid-query-parameter", field: "tail",
            detailMentions: ["tail must be a whole number from 1 to 1024", "\"0\""]),
        BadRequest(
            label: "tail=abc", method: "GET", query: ["tail": "abc"], code: "invalid-query-parameter", field: "tail",
            detailMentions: ["\"abc\""]),
        BadRequest(
            label: "tail=1025", method: "GET", query: ["tail": "1025"], code: "invalid-query-parameter", field: "tail",
            detailMentions: ["\"1025\""]),
        BadRequest(
            label: "tail and sinceSeq", method: "GET", query: ["tail": "1", "sinceSeq": "0"],
            code: "invalid-query-parameter", field: "tail", detailMentions: ["not both"]),
        BadRequest(
            label: "sinceSeq=-1", method: "GET", query: ["sinceSeq": "-1"], code: "invalid-query-parameter",
            field: "sinceSeq", detailMentions: ["\"-1\""]),
        BadRequest(
            label: "parameter on create", path: "/v1/tenants/acme/sessions", query: ["region": "eu-west"], body: "{}",
            code: "invalid-query-parameter", field: "region"),
    ]

    @Test(arguments: invalidQueries)
    func invalidQueryParameterIsRejected(_ request: BadRequest) async throws {
        try await withOneRegion { region in
            try await expectRejected(request, on: region)
        }
    }

    // MARK: Sizes

    @Test func oversizedBodyIsRejected() async throws {
        try await withOneRegion { region in
            let content = String(repeating: "x", count: 10_000)
            let body = "{\"role\":\"user\",\"content\":\"\(content)\",\"tokens\":5}"
            try #require(body.utf8.count > OneRegion.maximumBodyBytes)

            try await expectRejected(
                BadRequest(
                    label: "10 kB body", body: body, status: 413, code: "body-too-large",
                    detailMentions: ["\(OneRegion.maximumBodyBytes) bytes"]),
                on: region)
        }
    }

    @Test func turnOverContentLimitIsRejected() async throws {
        try await withOneRegion { region in
            let content = String(repeating: "x", count: 2000)

            try await expectRejected(
                BadRequest(
                    label: "2000-byte turn", body: "{\"role\":\"user\",\"content\":\"\(content)\",\"tokens\":5}",
                    status: 413, code: "limit-exceeded",
                    detailMentions: ["2000 bytes", "maximum per turn is \(OneRegion.maximumTurnBytes)"]),
                on: region)
        }
    }

    // MARK: Routing tokens

    @Test func missingTokenIsRejected() async throws {
        try await withOneRegion { region in
            try await expectRejected(
                BadRequest(
                    label: "no token", token: .none, body: OneRegion.validTurn, status: 401, code: "token-missing",
                    field: "Homeport-Route", detailMentions: ["Homeport-Route header is missing"]),
                on: region)
        }
    }

    @Test func emptyTokenIsRejected() async throws {
        try await withOneRegion { region in
            try await expectRejected(
                BadRequest(
                    label: "empty token", token: .text(""), body: OneRegion.validTurn, status: 401, code: "token-missing",
                    field: "Homeport-Route"),
                on: region)
        }
    }

    static let garbledTokens = ["garbage", "hp1.k1.e30", "hp2.k1.e30.AAAA", "hp1.k1.e30.!!!!"]

    @Test(arguments: garbledTokens)
    func garbledTokenIsRejected(_ token: String) async throws {
        try await withOneRegion { region in
            try await expectRejected(
                BadRequest(
                    label: "token \(token)", token: .text(token), body: OneRegion.validTurn, status: 401,
                    code: "token-malformed", field: "Homeport-Route"),
                on: region)
        }
    }

    @Test func tokenWithAlteredSignatureIsRejected() async throws {
        try await withOneRegion { region in
            var parts = region.token.split(separator: ".").map(String.init)
            try #require(parts.count == 4)
            let signature = parts[3]
            let replacement: Character = signature.first == "A" ? "B" : "A"
            parts[3] = String(replacement) + signature.dropFirst()

            try await expectRejected(
                BadRequest(
                    label: "altered signature", token: .text(parts.joined(separator: ".")), body: OneRegion.validTurn,
                    status: 401, code: "token-bad-signature", detailMentions: ["signature does not match"]),
                on: region)
        }
    }

    @Test func tokenWithNonCanonicalSignatureIsRejected() async throws {
        try await withOneRegion { region in
            // The 32 signature bytes take 43 base64url characters, so the last
            // character carries 2 bits that encode nothing. Flipping one of them
            // changes the token text but not the decoded signature.
            let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
            var parts = region.token.split(separator: ".").map(String.init)
            try #require(parts.count == 4)
            try #require(parts[3].count == 43)
            let last = parts[3].removeLast()
            let index = try #require(alphabet.firstIndex(of: last))
            parts[3].append(alphabet[index ^ 1])
            let altered = parts.joined(separator: ".")
            try #require(altered != region.token)

            let response = try await region.send("GET", region.sessionPath, token: altered)

            let type = try JSONValue.parse(response.body)["type"]?.stringValue
            #expect(response.status == 401)
            #expect(type == ProblemDetails.typePrefix + "token-bad-signature")
        }
    }

    @Test func tokenWithTruncatedSignatureIsRejected() async throws {
        try await withOneRegion { region in
            try await expectRejected(
                BadRequest(
                    label: "truncated signature", token: .text(String(region.token.dropLast(4))), body: OneRegion.validTurn,
                    status: 401, code: "token-bad-signature"),
                on: region)
        }
    }

    /// A claim that a forger changes while keeping the original signature.
    enum ForgedClaim: String, Sendable, CaseIterable {
        case home
        case epoch
        case expiry
        case session
        case tenant
    }

    @Test(arguments: ForgedClaim.allCases)
    func tokenWithForgedClaimIsRejected(_ claim: ForgedClaim) async throws {
        try await withOneRegion { region in
            let parts = region.token.split(separator: ".").map(String.init)
            try #require(parts.count == 4)
            let claimBytes = try #require(Base64URL.decode(parts[2][...]))
            guard case .object(var claims) = try JSONValue.parse(claimBytes) else {
                Issue.record("the token's claims are not a JSON object")
                return
            }
            switch claim {
            case .home: claims["home"] = .string("eu-west")
            case .epoch: claims["ep"] = .integer(2)
            case .expiry: claims["exp"] = .integer((claims["exp"]?.integerValue ?? 0) + 86_400)
            case .session: claims["sid"] = .string("forged-session")
            case .tenant: claims["ten"] = .string("other")
            }
            let forgedClaims = Base64URL.encode(JSONValue.object(claims).serializedBytes())
            try #require(forgedClaims != parts[2])
            let forged = [parts[0], parts[1], forgedClaims, parts[3]].joined(separator: ".")

            try await expectRejected(
                BadRequest(
                    label: "forged \(claim.rawValue)", token: .text(forged), body: OneRegion.validTurn, status: 401,
                    code: "token-bad-signature"),
                on: region)
        }
    }

    @Test func tokenFromUnknownKeyIsRejected() async throws {
        try await withOneRegion { region in
            let otherRing = try TokenKeyRing(keys: ["other": try SecureRandom.bytes(count: 32)], signingKeyID: "other")
            let nowSeconds = region.clock.nowMilliseconds() / 1000
            let token = otherRing.sign(
                RoutingToken(
                    session: region.session, tenant: try #require(TenantID("acme")), home: "us-east", epoch: 1,
                    issuedAt: nowSeconds, expiresAt: nowSeconds + 3600))

            try await expectRejected(
                BadRequest(
                    label: "key other", token: .text(token), body: OneRegion.validTurn, status: 401, code: "token-unknown-key",
                    detailMentions: ["\"other\""]),
                on: region)
        }
    }

    @Test func tokenFromOtherKeyWithSameIDIsRejected() async throws {
        try await withOneRegion { region in
            let keyID = region.cluster.keyRing.signingKeyID
            let otherRing = try TokenKeyRing(keys: [keyID: try SecureRandom.bytes(count: 32)], signingKeyID: keyID)
            let nowSeconds = region.clock.nowMilliseconds() / 1000
            let token = otherRing.sign(
                RoutingToken(
                    session: region.session, tenant: try #require(TenantID("acme")), home: "us-east", epoch: 1,
                    issuedAt: nowSeconds, expiresAt: nowSeconds + 3600))

            try await expectRejected(
                BadRequest(
                    label: "same key id, other key", token: .text(token), body: OneRegion.validTurn, status: 401,
                    code: "token-bad-signature"),
                on: region)
        }
    }

    @Test func expiredTokenIsRejected() async throws {
        try await withOneRegion { region in
            let nowSeconds = region.clock.nowMilliseconds() / 1000
            let token = try region.signToken { claims in
                claims.issuedAt = nowSeconds - 7200
                claims.expiresAt = nowSeconds - 1
            }

            try await expectRejected(
                BadRequest(
                    label: "expired", token: .text(token), body: OneRegion.validTurn, status: 401, code: "token-expired",
                    detailMentions: ["expired at \(nowSeconds - 1)"]),
                on: region)
        }
    }

    @Test func tokenExpiringNowIsRejected() async throws {
        try await withOneRegion { region in
            let nowSeconds = region.clock.nowMilliseconds() / 1000
            let token = try region.signToken { $0.expiresAt = nowSeconds }

            try await expectRejected(
                BadRequest(label: "expires now", token: .text(token), body: OneRegion.validTurn, status: 401, code: "token-expired"),
                on: region)
        }
    }

    @Test func sessionTokenExpiresAfterLifetime() async throws {
        try await withOneRegion { region in
            let lifetime = region.cluster.nodes[0].configuration.tokenLifetime
            region.clock.advance(by: lifetime - .seconds(1))

            let lastValidSecond = try await region.send("GET", region.sessionPath, token: region.token)
            #expect(lastValidSecond.status == 200)

            region.clock.advance(by: .seconds(1))
            let expired = try await region.send("GET", region.sessionPath, token: region.token)
            try expectProblem(expired, status: 401, code: "token-expired")
        }
    }

    @Test func tokenForOtherSessionIsRejected() async throws {
        try await withOneRegion { region in
            let other = try await region.createSession()

            try await expectRejected(
                BadRequest(
                    label: "other session's token", token: .text(other.token), body: OneRegion.validTurn, status: 401,
                    code: "token-session-mismatch", detailMentions: [region.session.rawValue]),
                on: region)
            #expect(try await region.store.sessionInfo(other.id).turnCount == 0)
        }
    }

    @Test func tokenForOtherTenantIsRejected() async throws {
        try await withOneRegion { region in
            let beta = try await region.createSession(tenant: "beta")

            // The path names tenant beta and the acme session, but the token is acme's.
            try await expectRejected(
                BadRequest(
                    label: "acme token on beta path", path: "/v1/tenants/beta/sessions/{session}/turns",
                    body: OneRegion.validTurn, status: 401, code: "token-tenant-mismatch", detailMentions: ["beta"]),
                on: region)
            #expect(try await region.store.sessionInfo(beta.id).turnCount == 0)
        }
    }

    @Test func signedTokenNamingOtherTenantIsRejected() async throws {
        try await withOneRegion { region in
            let token = try region.signToken { $0.tenant = TenantID("beta")! }

            // The signature is valid and path and token agree on tenant beta, but
            // the session belongs to acme.
            try await expectRejected(
                BadRequest(
                    label: "beta claims for an acme session", path: "/v1/tenants/beta/sessions/{session}/turns",
                    token: .text(token), body: OneRegion.validTurn, status: 401, code: "token-tenant-mismatch"),
                on: region)
        }
    }

    @Test func tokenForOtherEpochIsRejected() async throws {
        try await withOneRegion { region in
            let token = try region.signToken { $0.epoch = 2 }

            try await expectRejected(
                BadRequest(
                    label: "epoch 2", token: .text(token), body: OneRegion.validTurn, status: 409, code: "stale-epoch",
                    detailMentions: ["epoch 2", "epoch 1"]),
                on: region)
        }
    }

    @Test func tokenForUnknownSessionIsNotFound() async throws {
        try await withOneRegion { region in
            let unknown = try #require(SessionID("no-such-session"))
            let token = try region.signToken { $0.session = unknown }

            try await expectRejected(
                BadRequest(
                    label: "unknown session", path: "/v1/tenants/acme/sessions/no-such-session/turns", token: .text(token),
                    body: OneRegion.validTurn, status: 404, code: "session-not-found"),
                on: region)
        }
    }

    // MARK: Path parameters

    static let invalidSessionIDs = [
        // libmicrohttpd percent-decodes the path, so the handler gets the
        // segment ".." where the session id belongs.
        BadRequest(
            label: "encoded ../../etc", path: "/v1/tenants/acme/sessions/..%2F..%2Fetc/turns",
            code: "invalid-path-parameter", field: "session", detailMentions: ["session id \"..\" is invalid"]),
        BadRequest(
            label: "65 characters", path: "/v1/tenants/acme/sessions/\(String(repeating: "a", count: 65))/turns",
            code: "invalid-path-parameter", field: "session", detailMentions: ["1 to 64 characters"]),
        BadRequest(
            label: "dollar sign", path: "/v1/tenants/acme/sessions/ab$cd/turns", code: "invalid-path-parameter",
            field: "session", detailMentions: ["\"ab$cd\""]),
    ]

    @Test(arguments: invalidSessionIDs)
    func invalidSessionIDIsRejected(_ request: BadRequest) async throws {
        try await withOneRegion { region in
            try await expectRejected(request, on: region)
        }
    }

    static let invalidTenants = [
        BadRequest(
            label: "uppercase on append", path: "/v1/tenants/ACME/sessions/{session}/turns", body: OneRegion.validTurn,
            code: "invalid-path-parameter", field: "tenant", detailMentions: ["tenant \"ACME\" is invalid"]),
        BadRequest(
            label: "uppercase on create", path: "/v1/tenants/ACME/sessions", body: "{}", code: "invalid-path-parameter",
            field: "tenant", detailMentions: ["tenant \"ACME\" is invalid"]),
        BadRequest(
            label: "dot-dot", path: "/v1/tenants/../sessions", body: "{}", code: "invalid-path-parameter",
            field: "tenant", detailMentions: ["tenant \"..\" is invalid"]),
        BadRequest(
            label: "encoded space", path: "/v1/tenants/ac%20me/sessions", body: "{}", code: "invalid-path-parameter",
            field: "tenant", detailMentions: ["tenant \"ac me\" is invalid"]),
    ]

    @Test(arguments: invalidTenants)
    func invalidTenantIsRejected(_ request: BadRequest) async throws {
        try await withOneRegion { region in
            try await expectRejected(request, on: region)
        }
    }

    @Test func tenantWithEncodedSlashIsNotRouted() async throws {
        try await withOneRegion { region in
            // libmicrohttpd decodes %2F before routing, so "ac%2Fme" splits into
            // two segments and the path no longer matches a route.
            try await expectRejected(
                BadRequest(
                    label: "encoded slash", path: "/v1/tenants/ac%2Fme/sessions", body: "{}", status: 404,
                    code: "route-not-found"),
                on: region)
        }
    }

    @Test func invalidKVCacheBlockIsRejected() async throws {
        try await withOneRegion { region in
            try await expectRejected(
                BadRequest(
                    label: "block -1", method: "GET", path: "/v1/tenants/acme/sessions/{session}/kv-refs/-1",
                    code: "invalid-path-parameter", field: "block", detailMentions: ["non-negative integer"]),
                on: region)
        }
    }

    // MARK: Ledger

    @Test func unknownLedgerStatusIsRejected() async throws {
        try await withOneRegion { region in
            try await expectRejected(
                BadRequest(
                    label: "status done", method: "PUT", path: "/v1/tenants/acme/sessions/{session}/ledger/call-1",
                    body: "{\"status\":\"done\"}", code: "invalid-value", field: "status",
                    detailMentions: ["\"done\"", "requested, running, succeeded, failed, cancelled"]),
                on: region)
        }
    }

    @Test func newLedgerEntryWithoutNameIsRejected() async throws {
        try await withOneRegion { region in
            try await expectRejected(
                BadRequest(
                    label: "no name", method: "PUT", path: "/v1/tenants/acme/sessions/{session}/ledger/call-2",
                    body: "{\"status\":\"requested\"}", code: "invalid-write", detailMentions: ["call-2", "\"name\""]),
                on: region)
        }
    }

    @Test func ledgerEntryWithOtherNameIsRejected() async throws {
        try await withOneRegion { region in
            try await expectRejected(
                BadRequest(
                    label: "renamed call", method: "PUT", path: "/v1/tenants/acme/sessions/{session}/ledger/call-1",
                    body: "{\"name\":\"calculator\",\"status\":\"running\"}", status: 409, code: "ledger-conflict",
                    detailMentions: ["web_search", "calculator"]),
                on: region)
        }
    }

    // MARK: Routes and methods

    @Test func wrongMethodIsRejected() async throws {
        try await withOneRegion { region in
            try await expectRejected(
                BadRequest(
                    label: "DELETE turns", method: "DELETE", status: 405, code: "method-not-allowed", field: "method",
                    detailMentions: ["DELETE", "GET or POST"]),
                on: region)

            // HTTP Semantics (RFC 9110, status 405) requires an Allow header that
            // lists the methods the resource supports.
            let response = try await region.send("DELETE", "\(region.sessionPath)/turns", token: region.token)
            let allowed = response.header("Allow").map { value in
                Set(value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            }
            #expect(allowed == ["GET", "POST"])
        }
    }

    static let unknownRoutes = [
        BadRequest(
            label: "unknown session operation", method: "GET", path: "/v1/tenants/acme/sessions/{session}/archive",
            status: 404, code: "route-not-found", detailMentions: ["/archive"]),
        BadRequest(label: "unknown version", method: "GET", path: "/v2/status", status: 404, code: "route-not-found"),
        BadRequest(label: "root", method: "GET", path: "/", status: 404, code: "route-not-found"),
    ]

    @Test(arguments: unknownRoutes)
    func unknownRouteIsRejected(_ request: BadRequest) async throws {
        try await withOneRegion { region in
            try await expectRejected(request, on: region)
        }
    }

    // MARK: Batch

    /// Every table case on one server in a row, then a normal append and read.
    @Test func serverServesAfterBadInputBatch() async throws {
        let batch =
            Self.malformedBodies + Self.wrongTypes + Self.invalidIdempotencyKeys + Self.invalidQueries
            + Self.invalidSessionIDs + Self.invalidTenants + Self.unknownRoutes
        try await withOneRegion { region in
            let before = try await region.snapshot()

            for request in batch {
                let token: String? =
                    switch request.token {
                    case .session: region.token
                    case .none: nil
                    case .text(let text): text
                    }
                let response = try await region.send(
                    request.method, request.path, query: request.query, token: token, headers: request.headers,
                    body: request.body)
                #expect(response.status == request.status, "\(request.label)")
                let type = try JSONValue.parse(response.body)["type"]?.stringValue
                #expect(type == ProblemDetails.typePrefix + request.code, "\(request.label)")
            }

            try await expectStillServing(region, unchangedFrom: before)
            let read = try await region.send("GET", "\(region.sessionPath)/turns", query: ["tail": "1"], token: region.token)
            #expect(read.status == 200)
            let turns = try #require(try JSONValue.parse(read.body)["turns"]?.arrayValue)
            #expect(turns.map { $0["content"]?.stringValue } == ["still here"])
            #expect(turns.map { $0["seq"]?.integerValue } == [Int64(before.info.lastStamp.seq) + 1])
        }
    }
}
