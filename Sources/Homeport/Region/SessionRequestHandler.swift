/// Serves session operations from this region's store: validates the body
/// and query, calls the store, and renders the JSON response. Runs only at the
/// session's home, after the routing token has been verified.
struct SessionRequestHandler: Sendable {
    /// Largest token count one turn may report.
    static let maximumTurnTokens: Int64 = 10_000_000
    static let maximumIdempotencyKeyBytes = 128
    static let maximumLocationBytes = 256
    static let maximumMetadataEntries = 32
    static let maximumMetadataBytes = 4096

    let store: any SessionStore
    let limits: SessionStoreLimits
    let clock: any WallClock
    /// When true, every operation first reads the session's info to check
    /// the token's tenant and epoch, because a session at a home region moves
    /// on takeover and each move raises its epoch. Sessions behind consensus
    /// never move, so their operations skip that read, which would cost a
    /// consensus round trip; only `describe` reads and checks the info.
    var checksTokenBeforeOperations = true

    func handle(
        _ operation: SessionOperation, session: SessionID, token: RoutingToken, request: HTTPRequest
    ) async throws -> HTTPResponse {
        var info: SessionInfo?
        if checksTokenBeforeOperations || operation == .describe {
            info = try await checkedInfo(session, token: token)
        }

        let now = clock.nowMilliseconds()
        switch operation {
        case .describe:
            try rejectBodyAndQuery(request)
            return .json(200, SessionJSON.session(info!))

        case .appendTurn:
            try rejectQuery(request)
            let draft = try parseTurnDraft(request)
            let result = try await store.appendTurn(session, draft, nowMilliseconds: now)
            let body: JSONValue = .object(["turn": SessionJSON.appendedTurn(result.turn), "replayed": .bool(result.replayed)])
            return .json(result.replayed ? 200 : 201, body, headers: result.replayed ? [("Idempotent-Replayed", "true")] : [])

        case .readTurns:
            try rejectBody(request)
            let selection = try parseTurnSelection(request.query)
            let (turns, current) = try await store.readTurns(session, selection)
            var fields: [String: JSONValue] = [
                "turns": .array(turns.map(SessionJSON.turn)),
                "epoch": .integer(Int64(current.epoch)),
                "lastSeq": .integer(Int64(current.lastStamp.seq)),
                "turnCount": .integer(Int64(current.turnCount)),
            ]
            // A session adopted after its home failed may miss that home's last writes.
            if current.replicationGap { fields["replicationGap"] = .bool(true) }
            return .json(200, .object(fields))

        case .listLedger:
            try rejectBodyAndQuery(request)
            let entries = try await store.ledgerEntries(session)
            return .json(200, .object(["entries": .array(entries.map(SessionJSON.ledgerEntry))]))

        case .writeLedger(let callID):
            try rejectQuery(request)
            let write = try parseLedgerWrite(request, callID: callID)
            let result = try await store.writeLedgerEntry(session, write, nowMilliseconds: now)
            return .json(200, .object(["entry": SessionJSON.ledgerEntry(result.entry), "applied": .bool(result.applied)]))

        case .readLedger(let callID):
            try rejectBodyAndQuery(request)
            return .json(200, SessionJSON.ledgerEntry(try await store.ledgerEntry(session, callID: callID)))

        case .putKVCacheRefs:
            try rejectQuery(request)
            let (refs, ttl) = try parseKVCacheRefs(request)
            let stored = try await store.putKVCacheRefs(session, refs, ttlMilliseconds: ttl, nowMilliseconds: now)
            return .json(200, .object(["refs": .array(stored.map(SessionJSON.kvCacheRef))]))

        case .listKVCacheRefs:
            try rejectBodyAndQuery(request)
            let refs = try await store.kvCacheRefs(session, nowMilliseconds: now)
            return .json(200, .object(["refs": .array(refs.map(SessionJSON.kvCacheRef))]))

        case .readKVCacheRef(let block):
            try rejectBodyAndQuery(request)
            return .json(200, SessionJSON.kvCacheRef(try await store.kvCacheRef(session, block: block, nowMilliseconds: now)))

        case .listValues:
            try rejectBodyAndQuery(request)
            let values = try await store.values(session)
            return .json(200, .object(["values": .array(values.map(SessionJSON.value))]))

        case .putValue(let name):
            try rejectQuery(request)
            var reader = try JSONObjectReader.parseBody(request.body)
            let value = try reader.value("value")
            try reader.finish()
            let stored = try await store.putValue(session, name: name, value: value, nowMilliseconds: now)
            return .json(200, SessionJSON.value(stored))

        case .readValue(let name):
            try rejectBodyAndQuery(request)
            return .json(200, SessionJSON.value(try await store.value(session, name: name)))
        }
    }

    // MARK: Request parsing

    /// Reads the session's info and checks that the token names its tenant
    /// and current epoch. An older epoch means the session has moved since
    /// the token was issued.
    // NOTE: this check is a read before the write, not part of it: the region's
    // lease fence, not the store, keeps a taken-over session from being written here.
    private func checkedInfo(_ session: SessionID, token: RoutingToken) async throws -> SessionInfo {
        let info = try await store.sessionInfo(session)
        guard info.tenant == token.tenant else {
            throw RoutingTokenError(.tenantMismatch, "session \(session) belongs to another tenant than the token names")
        }
        guard info.epoch == token.epoch else {
            throw SessionStoreError(
                .staleEpoch, session: session,
                "the routing token is for epoch \(token.epoch) but session \(session) is at epoch \(info.epoch); use the token from the latest response"
            )
        }
        return info
    }

    private func rejectBody(_ request: HTTPRequest) throws(RequestError) {
        guard request.body.isEmpty else {
            throw RequestError(.invalidValue, field: "body", detail: "\(request.method) \(request.path) takes no body; send none")
        }
    }

    private func rejectQuery(_ request: HTTPRequest) throws(RequestError) {
        guard let name = request.query.keys.sorted().first else { return }
        throw RequestError(
            .invalidQueryParameter, field: name, detail: "\(request.method) \(request.path) takes no query parameters; remove \"\(name)\"")
    }

    private func rejectBodyAndQuery(_ request: HTTPRequest) throws(RequestError) {
        try rejectBody(request)
        try rejectQuery(request)
    }

    func parseTurnSelection(_ query: [String: String]) throws(RequestError) -> TurnSelection {
        for name in query.keys.sorted() where name != "tail" && name != "sinceSeq" {
            throw RequestError(
                .invalidQueryParameter, field: name, detail: "unknown query parameter \"\(name)\"; use tail=N or sinceSeq=N")
        }
        switch (query["tail"], query["sinceSeq"]) {
        case (nil, nil):
            return .all
        case (let tail?, nil):
            guard let count = Int(tail), (1...limits.maximumTurns).contains(count) else {
                throw RequestError(
                    .invalidQueryParameter, field: "tail",
                    detail: "tail must be a whole number from 1 to \(limits.maximumTurns), got \"\(tail.prefix(40))\"")
            }
            return .tail(count)
        case (nil, let since?):
            guard let seq = UInt64(since) else {
                throw RequestError(
                    .invalidQueryParameter, field: "sinceSeq",
                    detail: "sinceSeq must be a non-negative whole number, got \"\(since.prefix(40))\"")
            }
            return .since(seq)
        case (.some, .some):
            throw RequestError(.invalidQueryParameter, field: "tail", detail: "send tail or sinceSeq, not both")
        }
    }

    private func parseTurnDraft(_ request: HTTPRequest) throws(RequestError) -> TurnDraft {
        var reader = try JSONObjectReader.parseBody(request.body)

        let roleText = try reader.string("role", maximumBytes: 32)
        guard let role = TurnRole(rawValue: roleText) else {
            throw RequestError(
                .invalidValue, field: "role",
                detail:
                    "field \"role\" has unknown value \"\(roleText)\"; expected one of \(TurnRole.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        // The store judges content size against the policy's limit (413).
        let content = try reader.string("content", maximumBytes: Int.max)
        let tokens = try reader.integer("tokens", in: 0...Self.maximumTurnTokens)
        let metadata =
            try reader.optionalStringMap(
                "metadata", maximumEntries: Self.maximumMetadataEntries, maximumBytes: Self.maximumMetadataBytes) ?? [:]
        let bodyKey = try reader.optionalString("idempotencyKey", maximumBytes: Self.maximumIdempotencyKeyBytes)
        try reader.finish()

        let headerKey = request.header("Idempotency-Key")
        if let headerKey, let bodyKey, headerKey != bodyKey {
            throw RequestError(
                .invalidValue, field: "idempotencyKey",
                detail: "the Idempotency-Key header and the idempotencyKey field differ; send one, or the same value in both")
        }
        let key = bodyKey ?? headerKey
        if let key {
            guard !key.isEmpty, key.utf8.count <= Self.maximumIdempotencyKeyBytes,
                key.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F })
            else {
                throw RequestError(
                    .invalidValue, field: "idempotencyKey",
                    detail: "an idempotency key must be 1 to \(Self.maximumIdempotencyKeyBytes) printable ASCII characters without spaces")
            }
        }
        return TurnDraft(role: role, content: content, tokens: Int(tokens), metadata: metadata, idempotencyKey: key)
    }

    private func parseLedgerWrite(_ request: HTTPRequest, callID: String) throws(RequestError) -> LedgerWrite {
        var reader = try JSONObjectReader.parseBody(request.body)
        let name = try reader.optionalString("name", maximumBytes: 128)
        let arguments = reader.optionalValue("arguments")
        let statusText = try reader.string("status", maximumBytes: 32)
        let result = reader.optionalValue("result")
        try reader.finish()

        guard let status = LedgerStatus(rawValue: statusText) else {
            throw RequestError(
                .invalidValue, field: "status",
                detail:
                    "field \"status\" has unknown value \"\(statusText.prefix(32))\"; expected one of \(LedgerStatus.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        if let name, name.isEmpty {
            throw RequestError(.invalidValue, field: "name", detail: "field \"name\" must not be empty")
        }
        return LedgerWrite(callID: callID, name: name, arguments: arguments, status: status, result: result)
    }

    private func parseKVCacheRefs(_ request: HTTPRequest) throws(RequestError) -> ([(block: Int64, location: String)], Int64) {
        var reader = try JSONObjectReader.parseBody(request.body)
        let elements = try reader.array("refs", maximumCount: limits.maximumKVCacheRefs)
        let maximumTTLSeconds = Int64(86_400)
        let ttlSeconds = try reader.optionalInteger("ttlSeconds", in: 1...maximumTTLSeconds)
        try reader.finish()

        var refs: [(block: Int64, location: String)] = []
        refs.reserveCapacity(elements.count)
        for (index, element) in elements.enumerated() {
            var ref = try JSONObjectReader(element, path: "refs[\(index)]")
            let block = try ref.integer("block", in: 0...Int64.max)
            let location = try ref.string("location", maximumBytes: Self.maximumLocationBytes)
            try ref.finish()
            refs.append((block, location))
        }
        let ttl = ttlSeconds.map { $0 * 1000 } ?? limits.defaultKVCacheTTLMilliseconds
        return (refs, ttl)
    }
}
