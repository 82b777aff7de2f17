/// A request's place in the API, parsed from its method and path.
///
/// ```
/// GET  /healthz
/// GET  /metrics
/// POST /v1/tenants/{tenant}/sessions
/// GET  /v1/tenants/{tenant}/sessions/{session}
/// POST /v1/tenants/{tenant}/sessions/{session}/turns
/// GET  /v1/tenants/{tenant}/sessions/{session}/turns[?tail=N | ?sinceSeq=N]
/// GET  /v1/tenants/{tenant}/sessions/{session}/ledger
/// PUT  /v1/tenants/{tenant}/sessions/{session}/ledger/{callId}
/// GET  /v1/tenants/{tenant}/sessions/{session}/ledger/{callId}
/// PUT  /v1/tenants/{tenant}/sessions/{session}/kv-refs
/// GET  /v1/tenants/{tenant}/sessions/{session}/kv-refs
/// GET  /v1/tenants/{tenant}/sessions/{session}/kv-refs/{block}
/// GET  /v1/tenants/{tenant}/sessions/{session}/values
/// PUT  /v1/tenants/{tenant}/sessions/{session}/values/{name}
/// GET  /v1/tenants/{tenant}/sessions/{session}/values/{name}
/// ```
enum APIRoute: Equatable {
    case health
    case metrics
    case createSession(TenantID)
    case session(TenantID, SessionID, SessionOperation)
    /// `POST /internal/v1/replication`: a batch from a region this node is neighbour to.
    case replicationBatch
    /// `POST /internal/v1/reconcile/positions`: a returning region requests the
    /// positions of its sessions that this node has after taking it over.
    case reconcilePositions
    /// `POST /internal/v1/reconcile/tails`: a returning region ships the
    /// tails of its sessions to this node, which took it over.
    case reconcileTails
}

/// An operation on one session, all of which are served by the session's home.
enum SessionOperation: Equatable {
    case describe
    case appendTurn
    case readTurns
    case listLedger
    case writeLedger(callID: String)
    case readLedger(callID: String)
    case putKVCacheRefs
    case listKVCacheRefs
    case readKVCacheRef(block: Int64)
    case listValues
    case putValue(name: String)
    case readValue(name: String)

    /// The policy table kind this operation touches.
    var kind: String {
        switch self {
        case .describe: "session"
        case .appendTurn, .readTurns: "conversation_buffer"
        case .listLedger, .writeLedger, .readLedger: "tool_call_ledger"
        case .putKVCacheRefs, .listKVCacheRefs, .readKVCacheRef: "kv_cache_refs"
        case .listValues, .putValue, .readValue: "session_values"
        }
    }

    /// A short operation name for metrics and reports.
    var name: String {
        switch self {
        case .describe: "describe"
        case .appendTurn: "append"
        case .readTurns: "read"
        case .listLedger: "list"
        case .writeLedger: "write"
        case .readLedger: "read"
        case .putKVCacheRefs: "put"
        case .listKVCacheRefs: "list"
        case .readKVCacheRef: "read"
        case .listValues: "list"
        case .putValue: "put"
        case .readValue: "read"
        }
    }

    var isWrite: Bool {
        switch self {
        case .appendTurn, .writeLedger, .putKVCacheRefs, .putValue: true
        case .describe, .readTurns, .listLedger, .readLedger, .listKVCacheRefs, .readKVCacheRef, .listValues, .readValue: false
        }
    }
}

extension APIRoute {
    /// Names of ledger call ids and value names: 1 to 128 characters of
    /// `A-Z a-z 0-9 . _ : -`, safe in a path segment.
    static func isValidEntryName(_ text: String) -> Bool {
        let bytes = text.utf8
        guard (1...128).contains(bytes.count), text != ".", text != ".." else { return false }
        return bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"),
                UInt8(ascii: "-"):
                true
            default:
                false
            }
        }
    }

    static let entryNameRule = "1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-', other than . and .."

    /// Parses `method` and `path`.
    ///
    /// - Throws: `RequestError` with `routeNotFound` for an unknown path,
    ///   `methodNotAllowed` for a known path with another method, and
    ///   `invalidPathParameter` naming the segment for a bad id.
    static func parse(method: String, path: String) throws(RequestError) -> APIRoute {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)

        switch segments.first {
        case "healthz" where segments.count == 1:
            try require(method, ["GET"], path)
            return .health
        case "metrics" where segments.count == 1:
            try require(method, ["GET"], path)
            return .metrics
        case "v1":
            break
        case "internal" where segments == ["internal", "v1", "replication"]:
            try require(method, ["POST"], path)
            return .replicationBatch
        case "internal" where segments == ["internal", "v1", "reconcile", "positions"]:
            try require(method, ["POST"], path)
            return .reconcilePositions
        case "internal" where segments == ["internal", "v1", "reconcile", "tails"]:
            try require(method, ["POST"], path)
            return .reconcileTails
        default:
            throw notFound(path)
        }

        guard segments.count >= 4, segments[1] == "tenants", segments[3] == "sessions" else { throw notFound(path) }
        guard let tenant = TenantID(segments[2]) else {
            throw RequestError(
                .invalidPathParameter, field: "tenant",
                detail: "tenant \"\(segments[2].prefix(80))\" is invalid; a tenant id is \(TenantID.allowedCharactersDescription)")
        }
        if segments.count == 4 {
            try require(method, ["POST"], path)
            return .createSession(tenant)
        }
        guard let session = SessionID(segments[4]) else {
            throw RequestError(
                .invalidPathParameter, field: "session",
                detail: "session id \"\(segments[4].prefix(80))\" is invalid; a session id is \(SessionID.allowedCharactersDescription)")
        }
        let rest = Array(segments.dropFirst(5))
        return .session(tenant, session, try parseOperation(method: method, rest: rest, path: path))
    }

    private static func parseOperation(method: String, rest: [String], path: String) throws(RequestError) -> SessionOperation {
        switch (rest.first, rest.count) {
        case (nil, _):
            try require(method, ["GET"], path)
            return .describe
        case ("turns", 1):
            try require(method, ["GET", "POST"], path)
            return method == "POST" ? .appendTurn : .readTurns
        case ("ledger", 1):
            try require(method, ["GET"], path)
            return .listLedger
        case ("ledger", 2):
            try require(method, ["GET", "PUT"], path)
            let callID = try entryName(rest[1], field: "callId")
            return method == "PUT" ? .writeLedger(callID: callID) : .readLedger(callID: callID)
        case ("kv-refs", 1):
            try require(method, ["GET", "PUT"], path)
            return method == "PUT" ? .putKVCacheRefs : .listKVCacheRefs
        case ("kv-refs", 2):
            try require(method, ["GET"], path)
            guard let block = Int64(rest[1]), block >= 0 else {
                throw RequestError(
                    .invalidPathParameter, field: "block",
                    detail: "block \"\(rest[1].prefix(80))\" is invalid; a block is a non-negative integer")
            }
            return .readKVCacheRef(block: block)
        case ("values", 1):
            try require(method, ["GET"], path)
            return .listValues
        case ("values", 2):
            try require(method, ["GET", "PUT"], path)
            let name = try entryName(rest[1], field: "name")
            return method == "PUT" ? .putValue(name: name) : .readValue(name: name)
        default:
            throw notFound(path)
        }
    }

    private static func entryName(_ text: String, field: String) throws(RequestError) -> String {
        guard isValidEntryName(text) else {
            throw RequestError(
                .invalidPathParameter, field: field,
                detail: "\(field) \"\(text.prefix(80))\" is invalid; it must be \(entryNameRule)")
        }
        return text
    }

    private static func require(_ method: String, _ allowed: [String], _ path: String) throws(RequestError) {
        guard allowed.contains(method) else {
            throw RequestError(
                .methodNotAllowed, field: "method",
                detail: "\(method) is not allowed on \(path.prefix(200)); use \(allowed.joined(separator: " or "))",
                allowedMethods: allowed)
        }
    }

    private static func notFound(_ path: String) -> RequestError {
        RequestError(
            .routeNotFound,
            detail: "no route for \(path.prefix(200)); session routes start with /v1/tenants/{tenant}/sessions")
    }
}
