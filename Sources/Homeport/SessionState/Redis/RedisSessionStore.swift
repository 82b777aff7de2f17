/// A session store kept in a Redis server, so that the sessions outlive a
/// Homeport process and every node of a region can serve them. It needs
/// Redis 6.2 or newer (for `LPOP` with a count) and is tested with 7.0.
///
/// Keys: see `RedisSessionKeys` (per session `<prefix>:{<session>}:meta`,
/// `:turns`, `:keys`, `:keyorder`, `:ledger`, `:kv`, `:kvexpiry`, `:values`,
/// and the set `<prefix>:sessions`). Record formats: see `RedisSessionCodec`.
///
/// Atomicity: every read-modify-write runs inside Redis. The operations of
/// `RedisSessionScripts` are Lua scripts (EVALSHA, or EVAL when the server
/// lacks the script); `adopt` and `mergeReconcileTail`, which rebuild a whole
/// session, read it under WATCH and write it back in one MULTI/EXEC, which
/// retries if another client changed the session in between. The semantics
/// are those of `MemorySessionStore` (the conformance suite runs on both).
///
/// Threads: hiredis blocks, so every command runs on a thread of
/// `RedisConnectionPool`, never on the Swift concurrency pool; the calling
/// task is suspended until the reply. A session's operations all run on one
/// thread, in the order they were called.
///
/// Durability: an acknowledged write is as durable as the server makes it.
/// Run Redis with `appendonly yes` and `appendfsync always` (every write on
/// disk before the reply) or `everysec` (a server crash or power loss can
/// lose the last second; killing only the process loses nothing, because
/// Redis writes the AOF before replying). The durable session log is not
/// used: Redis's AOF is the log.
///
/// Replication: each mutation's `ReplicationEntry` goes to the journal after
/// its script committed, on the session's thread, so per session in stamp
/// order. Give the store a journal without a session log.
///
/// Failures: a server that is down, too slow or failing makes every
/// operation throw `storeUnavailable` (503) within the connect or command
/// timeout; nothing crashes or hangs, and the store reconnects by itself.
public final class RedisSessionStore: SessionStore {
    public let configuration: Configuration
    public let limits: SessionStoreLimits
    /// Receives every committed mutation; nil records nothing.
    private let journal: SessionJournal?
    private let pool: RedisConnectionPool
    let keys: RedisSessionKeys
    let logger: Logger

    /// Starts the I/O threads. Connections open on first use, so a server
    /// that is down now makes requests fail, not the start.
    ///
    /// - Throws: `ConfigurationError` for an invalid configuration.
    public init(
        configuration: Configuration, limits: SessionStoreLimits = SessionStoreLimits(), journal: SessionJournal? = nil,
        logger: Logger
    ) throws(ConfigurationError) {
        try configuration.validate()
        self.configuration = configuration
        self.limits = limits
        self.journal = journal
        self.keys = RedisSessionKeys(prefix: configuration.keyPrefix)
        self.logger = logger.with(["component": "redis-session-store"])
        self.pool = RedisConnectionPool(
            settings: RedisConnectionPool.Settings(
                host: configuration.host, port: configuration.port, connectTimeout: configuration.connectTimeout,
                commandTimeout: configuration.commandTimeout, reconnectDelay: configuration.reconnectDelay),
            threadCount: configuration.threadCount, name: "redis-session", logger: self.logger)
    }

    /// Stops the I/O threads once their queued operations ran. Later
    /// operations fail with `storeUnavailable`.
    public func shutdown() {
        pool.shutdown()
    }

    // MARK: Running operations

    /// Returns the lane of a session, from a hash of its id that is the same
    /// in every process.
    private func lane(for id: SessionID) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in id.rawValue.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
        }
        return Int(hash % UInt64(pool.laneCount))
    }

    /// Runs `body` on the session's thread (any thread when `id` is nil) and
    /// returns its outcome. Redis failures become `storeUnavailable`.
    func onThread<Value: Sendable>(
        _ id: SessionID?, _ body: @escaping @Sendable (RedisConnection) throws(RedisError) -> Result<Value, SessionStoreError>
    ) async throws(SessionStoreError) -> Value {
        let outcome: Result<Value, SessionStoreError>
        do throws(RedisError) {
            outcome = try await pool.perform(lane: id.map(lane(for:)), body)
        } catch {
            throw Self.unavailable(error, session: id)
        }
        return try outcome.get()
    }

    static func unavailable(_ error: RedisError, session: SessionID?) -> SessionStoreError {
        SessionStoreError(.storeUnavailable, session: session, "the session store is unavailable (\(error.detail)); retry later")
    }

    /// A script's reply: the session's info and the operation's results, or
    /// a rule failure with the values its message needs.
    enum ScriptOutcome {
        case succeeded(info: SessionInfo, results: [RedisReply])
        case rejected(code: String, values: [RedisReply])
    }

    func run(
        _ script: RedisScript, _ id: SessionID, _ arguments: [[UInt8]], on connection: RedisConnection
    ) throws(RedisError) -> ScriptOutcome {
        let reply = try script.run(on: connection, keys: keys.keys(for: id), arguments: arguments)
        guard let elements = reply.elements, let status = elements.first?.text else {
            throw RedisError(.unexpectedReply, "the \(script.name) script returned \(RedisSessionCodec.preview(reply))")
        }
        guard status == "ok" else {
            return .rejected(code: status, values: Array(elements.dropFirst()))
        }
        guard elements.count >= 2 else {
            throw RedisError(.unexpectedReply, "the \(script.name) script returned no session info")
        }
        return .succeeded(info: try RedisSessionCodec.decodeInfo(elements[1], id: id), results: Array(elements.dropFirst(2)))
    }

    /// Records a committed mutation. The write is in Redis already, so a
    /// journal whose session log fails cannot undo it: the failure is logged
    /// and the caller still gets the result.
    ///
    /// NOTE: a process crash between a commit and this call loses the entry
    /// from the replication outbox while Redis keeps the write. The standby
    /// then holds the session's later entries until a snapshot of it arrives.
    func record(_ entry: ReplicationEntry) {
        guard let journal else { return }
        do throws(SessionLogError) {
            try journal.record(entry)
        } catch {
            logger.error(
                "session log failed after a Redis write committed",
                ["session": entry.session.rawValue, "seq": String(entry.seq), "error": error.description])
        }
    }

    /// Empties the journal's session log, if it has one.
    func resetJournalLog() throws(SessionLogError) {
        try journal?.resetLog()
    }

    // MARK: Sessions

    public func createSession(
        _ id: SessionID, tenant: TenantID, home: String, epoch: UInt64, nowMilliseconds: Int64
    ) async throws(SessionStoreError) -> SessionInfo {
        let arguments = Self.arguments(
            id.rawValue, tenant.rawValue, home, String(epoch), String(nowMilliseconds), String(limits.maximumSessions))
        let maximumSessions = limits.maximumSessions
        return try await onThread(id) { connection throws(RedisError) in
            switch try self.run(RedisSessionScripts.create, id, arguments, on: connection) {
            case .succeeded(let info, _):
                self.record(.sessionCreated(info))
                return .success(info)
            case .rejected("session-exists", _):
                return .failure(SessionStoreError(.sessionExists, session: id, "session \(id) exists already"))
            case .rejected("session-limit", _):
                return .failure(
                    SessionStoreError(
                        .limitExceeded, session: id, "this region holds \(maximumSessions) sessions, the configured maximum"))
            case .rejected(let code, let values):
                throw Self.unknownRejection(code, values, id)
            }
        }
    }

    public func sessionInfo(_ id: SessionID) async throws(SessionStoreError) -> SessionInfo {
        try await onThread(id) { connection throws(RedisError) in
            switch try self.run(RedisSessionScripts.info, id, [], on: connection) {
            case .succeeded(let info, _):
                return .success(info)
            case .rejected(let code, let values):
                return .failure(try Self.commonRejection(code, values, id))
            }
        }
    }

    // MARK: Conversation buffer

    public func appendTurn(
        _ id: SessionID, _ draft: TurnDraft, nowMilliseconds: Int64
    ) async throws(SessionStoreError) -> TurnAppendResult {
        let limits = self.limits
        let contentBytes = draft.content.utf8.count
        let body = RedisSessionCodec.turnBody(
            role: draft.role, content: draft.content, tokens: draft.tokens, createdAtMilliseconds: nowMilliseconds,
            metadata: draft.metadata, idempotencyKey: draft.idempotencyKey, recovered: false)
        let fingerprint = RedisSessionCodec.fingerprint(
            role: draft.role, tokens: draft.tokens, content: draft.content, metadata: draft.metadata)
        let arguments: [[UInt8]] = [
            body, Array(String(contentBytes).utf8), Array((draft.idempotencyKey == nil ? "0" : "1").utf8),
            Array((draft.idempotencyKey ?? "").utf8), Array(fingerprint.utf8), Array(String(limits.maximumTurnBytes).utf8),
            Array(String(limits.maximumTurns).utf8), Array(String(limits.maximumBufferBytes).utf8),
            Array((limits.dropOldestTurns ? "1" : "0").utf8), Array(String(max(limits.maximumTurns * 4, 16)).utf8),
        ]

        return try await onThread(id) { connection throws(RedisError) in
            switch try self.run(RedisSessionScripts.appendTurn, id, arguments, on: connection) {
            case .succeeded(let info, let results):
                // A retry: the turn as the key first stored it.
                if results.first?.integer == 1, results.count == 2 {
                    return .success(TurnAppendResult(turn: try RedisSessionCodec.decodeTurn(results[1], of: id), replayed: true))
                }
                guard results.count == 3, results[0].integer == 0, let stamp = Self.stamp(results[1], results[2]) else {
                    throw RedisError(.unexpectedReply, "the append-turn script returned no stamp for session \(id)")
                }
                let turn = Turn(
                    stamp: stamp, role: draft.role, content: draft.content, tokens: draft.tokens,
                    createdAtMilliseconds: nowMilliseconds, metadata: draft.metadata, idempotencyKey: draft.idempotencyKey)
                self.record(ReplicationEntry(session: id, tenant: info.tenant, home: info.home, stamp: stamp, payload: .turnAppended(turn)))
                return .success(TurnAppendResult(turn: turn, replayed: false))

            case .rejected("idempotency-key-reused", let values):
                let key = draft.idempotencyKey ?? ""
                let first = Self.stampText(values)
                return .failure(
                    SessionStoreError(
                        .idempotencyKeyReused, session: id,
                        "idempotency key \"\(key)\" was first used for a different turn (\(first)); use a new key for a new turn"))
            case .rejected("idempotency-turn-dropped", let values):
                let key = draft.idempotencyKey ?? ""
                let first = Self.stampText(values)
                return .failure(
                    SessionStoreError(
                        .limitExceeded, session: id,
                        "the turn first stored with idempotency key \"\(key)\" (\(first)) was dropped by the buffer's drop-oldest limit"))
            case .rejected("turn-too-large", _):
                return .failure(
                    SessionStoreError(
                        .limitExceeded, session: id,
                        "the turn's content is \(contentBytes) bytes; the maximum per turn is \(limits.maximumTurnBytes)"))
            case .rejected("turn-limit", let values):
                return .failure(
                    SessionStoreError(
                        .limitExceeded, session: id,
                        "session \(id) holds \(Self.text(values.first)) turns, the maximum; the buffer's overflow policy is reject"))
            case .rejected("buffer-limit", _):
                return .failure(
                    SessionStoreError(
                        .limitExceeded, session: id,
                        "appending \(contentBytes) bytes would take session \(id) past its buffer limit of \(limits.maximumBufferBytes) bytes; the overflow policy is reject"
                    ))
            case .rejected(let code, let values):
                return .failure(try Self.commonRejection(code, values, id))
            }
        }
    }

    public func readTurns(
        _ id: SessionID, _ selection: TurnSelection
    ) async throws(SessionStoreError) -> (turns: [Turn], session: SessionInfo) {
        let arguments: [[UInt8]]
        switch selection {
        case .all: arguments = Self.arguments("all")
        case .tail(let count): arguments = Self.arguments("tail", String(count))
        case .since(let seq): arguments = Self.arguments("since", String(seq))
        }

        return try await onThread(id) { connection throws(RedisError) in
            switch try self.run(RedisSessionScripts.readTurns, id, arguments, on: connection) {
            case .succeeded(let info, let results):
                guard let records = results.first?.elements else {
                    throw RedisError(.unexpectedReply, "the read-turns script returned no turns for session \(id)")
                }
                var turns: [Turn] = []
                turns.reserveCapacity(records.count)
                for record in records {
                    turns.append(try RedisSessionCodec.decodeTurn(record, of: id))
                }
                return .success((turns, info))
            case .rejected(let code, let values):
                return .failure(try Self.commonRejection(code, values, id))
            }
        }
    }

    // MARK: Tool-call ledger

    public func writeLedgerEntry(
        _ id: SessionID, _ write: LedgerWrite, nowMilliseconds: Int64
    ) async throws(SessionStoreError) -> LedgerWriteResult {
        let limits = self.limits
        let arguments: [[UInt8]] = [
            Array(write.callID.utf8),
            Array((write.name == nil ? "0" : "1").utf8), Array((write.name ?? "").utf8),
            Array((write.arguments == nil ? "0" : "1").utf8), write.arguments?.serializedBytes() ?? [],
            Array(write.status.rawValue.utf8),
            Array((write.result == nil ? "0" : "1").utf8), write.result?.serializedBytes() ?? [],
            Array(String(nowMilliseconds).utf8), Array(String(limits.maximumLedgerEntries).utf8),
            Array(String(limits.maximumLedgerEntryBytes).utf8),
        ]

        return try await onThread(id) { connection throws(RedisError) in
            switch try self.run(RedisSessionScripts.writeLedgerEntry, id, arguments, on: connection) {
            case .succeeded(let info, let results):
                guard results.count == 2, let applied = results[0].integer else {
                    throw RedisError(.unexpectedReply, "the write-ledger-entry script returned no entry for session \(id)")
                }
                let entry = try RedisSessionCodec.decodeLedgerEntry(callID: write.callID, results[1], of: id)
                if applied == 1 {
                    self.record(
                        ReplicationEntry(
                            session: id, tenant: info.tenant, home: info.home, stamp: entry.stamp, payload: .ledgerEntryWritten(entry)))
                }
                return .success(LedgerWriteResult(entry: entry, applied: applied == 1))

            case .rejected("ledger-entry-too-large", let values):
                return .failure(
                    SessionStoreError(
                        .limitExceeded, session: id,
                        "ledger entry \"\(write.callID)\" would hold \(Self.text(values.first)) bytes of arguments and result; the maximum is \(limits.maximumLedgerEntryBytes)"
                    ))
            case .rejected("ledger-name-missing", _):
                return .failure(
                    SessionStoreError(
                        .invalidWrite, session: id,
                        "ledger entry \"\(write.callID)\" is new, so the write must carry the tool's \"name\""))
            case .rejected("ledger-limit", let values):
                return .failure(
                    SessionStoreError(
                        .limitExceeded, session: id, "session \(id) holds \(Self.text(values.first)) ledger entries, the maximum"))
            case .rejected("ledger-name-conflict", let values):
                return .failure(
                    SessionStoreError(
                        .ledgerConflict, session: id,
                        "ledger entry \"\(write.callID)\" is a call of \"\(Self.text(values.first))\", not \"\(write.name ?? "")\""))
            case .rejected("ledger-terminal-conflict", let values):
                return .failure(
                    SessionStoreError(
                        .ledgerConflict, session: id,
                        "ledger entry \"\(write.callID)\" already ended as \(Self.text(values.first)); it cannot also end as \(write.status.rawValue)"
                    ))
            case .rejected(let code, let values):
                return .failure(try Self.commonRejection(code, values, id))
            }
        }
    }

    public func ledgerEntry(_ id: SessionID, callID: String) async throws(SessionStoreError) -> LedgerEntry {
        try await onThread(id) { connection throws(RedisError) in
            switch try self.run(RedisSessionScripts.ledgerEntry, id, Self.arguments(callID), on: connection) {
            case .succeeded(_, let results):
                guard let record = results.first, record != .null else {
                    return .failure(SessionStoreError(.entryNotFound, session: id, "session \(id) has no ledger entry \"\(callID)\""))
                }
                return .success(try RedisSessionCodec.decodeLedgerEntry(callID: callID, record, of: id))
            case .rejected(let code, let values):
                return .failure(try Self.commonRejection(code, values, id))
            }
        }
    }

    public func ledgerEntries(_ id: SessionID) async throws(SessionStoreError) -> [LedgerEntry] {
        try await onThread(id) { connection throws(RedisError) in
            switch try self.run(RedisSessionScripts.ledgerEntries, id, [], on: connection) {
            case .succeeded(_, let results):
                return .success(try Self.decodeLedger(results.first ?? .null, of: id))
            case .rejected(let code, let values):
                return .failure(try Self.commonRejection(code, values, id))
            }
        }
    }

    static func decodeLedger(_ reply: RedisReply, of id: SessionID) throws(RedisError) -> [LedgerEntry] {
        var entries: [LedgerEntry] = []
        for (callID, record) in try RedisSessionCodec.pairs(reply, of: id, "the ledger") {
            entries.append(try RedisSessionCodec.decodeLedgerEntry(callID: callID, record, of: id))
        }
        return entries.sorted { $0.callID < $1.callID }
    }

    // MARK: KV-cache refs

    public func putKVCacheRefs(
        _ id: SessionID, _ refs: [(block: Int64, location: String)], ttlMilliseconds: Int64, nowMilliseconds: Int64
    ) async throws(SessionStoreError) -> [KVCacheRef] {
        let maximum = limits.maximumKVCacheRefs
        // A TTL that overflows the expiry time saturates instead of trapping.
        let (sum, overflow) = nowMilliseconds.addingReportingOverflow(ttlMilliseconds)
        let saturated: Int64 = ttlMilliseconds > 0 ? .max : .min
        let expiresAt = overflow ? saturated : sum
        var pairs: [[UInt8]] = []
        for (block, location) in refs {
            pairs.append(Array(String(block).utf8))
            pairs.append(Array(location.utf8))
        }
        let arguments = Self.arguments(String(nowMilliseconds), String(expiresAt), String(maximum)) + pairs

        return try await onThread(id) { connection throws(RedisError) in
            switch try self.run(RedisSessionScripts.putKVCacheRefs, id, arguments, on: connection) {
            case .succeeded(let info, let results):
                guard !refs.isEmpty else { return .success([]) }
                guard results.count == 2, let stamp = Self.stamp(results[0], results[1]) else {
                    throw RedisError(.unexpectedReply, "the put-kv-cache-refs script returned no stamp for session \(id)")
                }
                // KV-cache refs are recomputable and not replicated; the journal
                // still takes their position so that copies stay contiguous.
                self.record(ReplicationEntry(session: id, tenant: info.tenant, home: info.home, stamp: stamp, payload: .skipped))
                return .success(
                    refs.map { KVCacheRef(block: $0.block, location: $0.location, stamp: stamp, expiresAtMilliseconds: expiresAt) })
            case .rejected("kv-limit", let values):
                let count = values.count > 0 ? Self.text(values[0]) : "?"
                let added = values.count > 1 ? Self.text(values[1]) : "?"
                return .failure(
                    SessionStoreError(
                        .limitExceeded, session: id,
                        "session \(id) holds \(count) KV-cache refs; adding \(added) would pass the maximum of \(maximum)"))
            case .rejected(let code, let values):
                return .failure(try Self.commonRejection(code, values, id))
            }
        }
    }

    public func kvCacheRefs(_ id: SessionID, nowMilliseconds: Int64) async throws(SessionStoreError) -> [KVCacheRef] {
        try await onThread(id) { connection throws(RedisError) in
            switch try self.run(RedisSessionScripts.kvCacheRefs, id, [], on: connection) {
            case .succeeded(_, let results):
                var refs: [KVCacheRef] = []
                for (field, record) in try RedisSessionCodec.pairs(results.first ?? .null, of: id, "the KV-cache refs") {
                    guard let block = Int64(field) else {
                        throw RedisSessionCodec.malformed("the KV-cache ref block \"\(field)\"", of: id, record)
                    }
                    let ref = try RedisSessionCodec.decodeKVCacheRef(block: block, record, of: id)
                    if ref.expiresAtMilliseconds > nowMilliseconds { refs.append(ref) }
                }
                return .success(refs.sorted { $0.block < $1.block })
            case .rejected(let code, let values):
                return .failure(try Self.commonRejection(code, values, id))
            }
        }
    }

    public func kvCacheRef(_ id: SessionID, block: Int64, nowMilliseconds: Int64) async throws(SessionStoreError) -> KVCacheRef {
        try await onThread(id) { connection throws(RedisError) in
            switch try self.run(RedisSessionScripts.kvCacheRef, id, Self.arguments(String(block)), on: connection) {
            case .succeeded(_, let results):
                if let record = results.first, record != .null {
                    let ref = try RedisSessionCodec.decodeKVCacheRef(block: block, record, of: id)
                    if ref.expiresAtMilliseconds > nowMilliseconds { return .success(ref) }
                }
                return .failure(
                    SessionStoreError(.entryNotFound, session: id, "session \(id) has no unexpired KV-cache ref for block \(block)"))
            case .rejected(let code, let values):
                return .failure(try Self.commonRejection(code, values, id))
            }
        }
    }

    // MARK: Session values

    public func putValue(
        _ id: SessionID, name: String, value: JSONValue, nowMilliseconds: Int64
    ) async throws(SessionStoreError) -> SessionValue {
        let limits = self.limits
        let arguments: [[UInt8]] = [
            Array(name.utf8), value.serializedBytes(), Array(String(nowMilliseconds).utf8),
            Array(String(limits.maximumValueBytes).utf8), Array(String(limits.maximumValues).utf8),
        ]

        return try await onThread(id) { connection throws(RedisError) in
            switch try self.run(RedisSessionScripts.putValue, id, arguments, on: connection) {
            case .succeeded(let info, let results):
                guard results.count == 2, let stamp = Self.stamp(results[0], results[1]) else {
                    throw RedisError(.unexpectedReply, "the put-value script returned no stamp for session \(id)")
                }
                let stored = SessionValue(name: name, value: value, stamp: stamp, updatedAtMilliseconds: nowMilliseconds)
                self.record(ReplicationEntry(session: id, tenant: info.tenant, home: info.home, stamp: stamp, payload: .valuePut(stored)))
                return .success(stored)
            case .rejected("value-too-large", let values):
                return .failure(
                    SessionStoreError(
                        .limitExceeded, session: id,
                        "value \"\(name)\" is \(Self.text(values.first)) bytes serialised; the maximum is \(limits.maximumValueBytes)"))
            case .rejected("value-limit", let values):
                return .failure(
                    SessionStoreError(.limitExceeded, session: id, "session \(id) holds \(Self.text(values.first)) values, the maximum"))
            case .rejected(let code, let values):
                return .failure(try Self.commonRejection(code, values, id))
            }
        }
    }

    public func value(_ id: SessionID, name: String) async throws(SessionStoreError) -> SessionValue {
        try await onThread(id) { connection throws(RedisError) in
            switch try self.run(RedisSessionScripts.value, id, Self.arguments(name), on: connection) {
            case .succeeded(_, let results):
                guard let record = results.first, record != .null else {
                    return .failure(SessionStoreError(.entryNotFound, session: id, "session \(id) has no value \"\(name)\""))
                }
                return .success(try RedisSessionCodec.decodeValue(name: name, record, of: id))
            case .rejected(let code, let values):
                return .failure(try Self.commonRejection(code, values, id))
            }
        }
    }

    public func values(_ id: SessionID) async throws(SessionStoreError) -> [SessionValue] {
        try await onThread(id) { connection throws(RedisError) in
            switch try self.run(RedisSessionScripts.values, id, [], on: connection) {
            case .succeeded(_, let results):
                return .success(try Self.decodeValues(results.first ?? .null, of: id))
            case .rejected(let code, let values):
                return .failure(try Self.commonRejection(code, values, id))
            }
        }
    }

    static func decodeValues(_ reply: RedisReply, of id: SessionID) throws(RedisError) -> [SessionValue] {
        var values: [SessionValue] = []
        for (name, record) in try RedisSessionCodec.pairs(reply, of: id, "the values") {
            values.append(try RedisSessionCodec.decodeValue(name: name, record, of: id))
        }
        return values.sorted { $0.name < $1.name }
    }

    public func replicatedState(
        _ id: SessionID
    ) async throws(SessionStoreError) -> (info: SessionInfo, turns: [Turn], ledger: [LedgerEntry], values: [SessionValue]) {
        try await onThread(id) { connection throws(RedisError) in
            switch try self.run(RedisSessionScripts.replicatedState, id, [], on: connection) {
            case .succeeded(let info, let results):
                guard results.count == 3, let records = results[0].elements else {
                    throw RedisError(.unexpectedReply, "the read-replicated-state script returned too few parts for session \(id)")
                }
                var turns: [Turn] = []
                turns.reserveCapacity(records.count)
                for record in records {
                    turns.append(try RedisSessionCodec.decodeTurn(record, of: id))
                }
                return .success(
                    (info, turns, try Self.decodeLedger(results[1], of: id), try Self.decodeValues(results[2], of: id)))
            case .rejected(let code, let values):
                return .failure(try Self.commonRejection(code, values, id))
            }
        }
    }

    // MARK: Helpers

    static func arguments(_ texts: String...) -> [[UInt8]] {
        texts.map { Array($0.utf8) }
    }

    static func stamp(_ epoch: RedisReply, _ seq: RedisReply) -> SessionStamp? {
        guard let epoch = epoch.text.flatMap({ UInt64($0) }), let seq = seq.text.flatMap({ UInt64($0) }) else { return nil }
        return SessionStamp(epoch: epoch, seq: seq)
    }

    /// Formats the epoch and seq a script returned as a stamp, `(epoch, seq)`.
    static func stampText(_ values: [RedisReply]) -> String {
        guard values.count == 2, let stamp = stamp(values[0], values[1]) else { return "(?)" }
        return stamp.description
    }

    static func text(_ reply: RedisReply?) -> String {
        guard let reply else { return "?" }
        if let text = reply.text { return text }
        if let integer = reply.integer { return String(integer) }
        return "?"
    }

    /// The failure every session script can return.
    static func commonRejection(_ code: String, _ values: [RedisReply], _ id: SessionID) throws(RedisError) -> SessionStoreError {
        guard code == "session-not-found" else { throw unknownRejection(code, values, id) }
        return SessionStoreError(.sessionNotFound, session: id, "session \(id) does not exist in this region")
    }

    static func unknownRejection(_ code: String, _ values: [RedisReply], _ id: SessionID) -> RedisError {
        RedisError(.unexpectedReply, "a script returned the unknown failure \"\(code)\" for session \(id)")
    }
}
