import Synchronization

/// The embedded session store: everything in process memory.
///
/// Sessions are spread over 16 shards, each behind its own mutex, so requests
/// for different sessions rarely wait for each other and requests for the
/// same session are serialised (which makes them linearizable). No operation
/// suspends or does I/O while holding a lock.
///
/// Nothing survives the process: a crash loses every session of this store.
public final class MemorySessionStore: SessionStore {
    private final class Shard: Sendable {
        /// The sessions whose id hashes to this shard.
        let sessions = Mutex<[SessionID: SessionRecord]>([:])
    }

    private static let shardCount = 16
    private let shards: [Shard]
    private let sessionCount = Atomic<Int>(0)
    public let limits: SessionStoreLimits
    /// Records every mutation before it commits; nil records nothing.
    private let journal: SessionJournal?

    public init(limits: SessionStoreLimits = SessionStoreLimits(), journal: SessionJournal? = nil) {
        self.limits = limits
        self.journal = journal
        self.shards = (0..<Self.shardCount).map { _ in Shard() }
    }

    private func shard(for id: SessionID) -> Shard {
        var hasher = Hasher()
        hasher.combine(id)
        return shards[Int(UInt(bitPattern: hasher.finalize()) % UInt(Self.shardCount))]
    }

    /// Runs `body` on the session's record under its shard's lock.
    private func withSession<Result>(
        _ id: SessionID, _ body: (inout SessionRecord) throws(SessionStoreError) -> Result
    ) throws(SessionStoreError) -> Result {
        let outcome: Swift.Result<Result, SessionStoreError> = shard(for: id).sessions.withLock { sessions in
            guard var record = sessions[id] else {
                return .failure(SessionStoreError(.sessionNotFound, session: id, "session \(id) does not exist in this region"))
            }
            // Take the record out while it changes so the dictionary holds no
            // second reference and the arrays inside mutate in place.
            sessions[id] = nil
            defer { sessions[id] = record }
            do throws(SessionStoreError) {
                return .success(try body(&record))
            } catch {
                return .failure(error)
            }
        }
        return try outcome.get()
    }

    /// Runs a mutation under the session's lock. The entry it returns is
    /// recorded in the journal before the mutation commits. If that fails, the
    /// session is left as it was and the caller gets `notDurable`.
    private func withMutation<Result>(
        _ id: SessionID, _ body: (inout SessionRecord) throws(SessionStoreError) -> (Result, ReplicationEntry?)
    ) throws(SessionStoreError) -> Result {
        let journal = self.journal
        let outcome: Swift.Result<Result, SessionStoreError> = shard(for: id).sessions.withLock { sessions in
            guard var record = sessions[id] else {
                return .failure(SessionStoreError(.sessionNotFound, session: id, "session \(id) does not exist in this region"))
            }
            let original = journal == nil ? nil : record
            sessions[id] = nil
            defer { sessions[id] = record }
            do throws(SessionStoreError) {
                let (result, entry) = try body(&record)
                if let entry, let journal, let original {
                    do throws(SessionLogError) {
                        try journal.record(entry)
                    } catch {
                        record = original
                        return .failure(
                            SessionStoreError(
                                .notDurable, session: id,
                                "the session log could not record the write (\(error.detail)), so it was not applied; retry later"))
                    }
                }
                return .success(result)
            } catch {
                return .failure(error)
            }
        }
        return try outcome.get()
    }

    public func createSession(
        _ id: SessionID, tenant: TenantID, home: String, epoch: UInt64, nowMilliseconds: Int64
    ) throws(SessionStoreError) -> SessionInfo {
        let limit = limits.maximumSessions
        let outcome: Swift.Result<SessionInfo, SessionStoreError> = shard(for: id).sessions.withLock { sessions in
            guard sessions[id] == nil else {
                return .failure(SessionStoreError(.sessionExists, session: id, "session \(id) exists already"))
            }
            let count = sessionCount.add(1, ordering: .relaxed).newValue
            guard count <= limit else {
                sessionCount.subtract(1, ordering: .relaxed)
                return .failure(
                    SessionStoreError(
                        .limitExceeded, session: id, "this region holds \(limit) sessions, the configured maximum"))
            }
            let record = SessionRecord(
                id: id, tenant: tenant, home: home, epoch: epoch, createdAtMilliseconds: nowMilliseconds)
            do throws(SessionLogError) {
                try journal?.record(.sessionCreated(record.info))
            } catch {
                sessionCount.subtract(1, ordering: .relaxed)
                return .failure(
                    SessionStoreError(
                        .notDurable, session: id,
                        "the session log could not record the write (\(error.detail)), so it was not applied; retry later"))
            }
            sessions[id] = record
            return .success(record.info)
        }
        return try outcome.get()
    }

    /// Loads sessions rebuilt from their replicated entries, replacing any
    /// with the same id. Used when a node restarts from its session log.
    public func restore(_ copies: [StandbySession]) {
        for copy in copies {
            let record = SessionRecord(restoring: copy, limits: limits)
            let added = shard(for: copy.id).sessions.withLock { sessions -> Bool in
                defer { sessions[copy.id] = record }
                return sessions[copy.id] == nil
            }
            if added { sessionCount.add(1, ordering: .relaxed) }
        }
    }

    /// Makes this store the home of a session taken over from a failed region:
    /// builds it from the standby copy with the new home and epoch, records a
    /// snapshot of it in the journal, and returns its info. A session that is
    /// here already is returned as it is, so concurrent first requests adopt
    /// it once.
    public func adopt(
        _ copy: StandbySession, home: String, epoch: UInt64, replicationGap: Bool
    ) throws(SessionStoreError) -> SessionInfo {
        let journal = self.journal
        let limits = self.limits
        let outcome: Swift.Result<(SessionInfo, Bool), SessionStoreError> = shard(for: copy.id).sessions.withLock { sessions in
            if let existing = sessions[copy.id] { return .success((existing.info, false)) }
            var record = SessionRecord(restoring: copy, limits: limits)
            record.home = home
            record.epoch = epoch
            record.adoptedPosition = copy.appliedStamp
            record.replicationGap = replicationGap
            do throws(SessionLogError) {
                try journal?.record(record.snapshotEntry)
            } catch {
                return .failure(
                    SessionStoreError(
                        .notDurable, session: copy.id, "the session log could not record the takeover (\(error.detail)); retry later"))
            }
            sessions[copy.id] = record
            return .success((record.info, true))
        }
        let (info, added) = try outcome.get()
        if added { sessionCount.add(1, ordering: .relaxed) }
        return info
    }

    /// Returns the ids of every session in the store, sorted.
    public func sessionIDs() -> [SessionID] {
        shards.flatMap { shard in shard.sessions.withLock { Array($0.keys) } }.sorted()
    }

    public func adoptedPositions(_ ids: [SessionID]) -> [SessionID: SessionStamp] {
        var positions: [SessionID: SessionStamp] = [:]
        for id in ids {
            if let position = shard(for: id).sessions.withLock({ $0[id]?.adoptedPosition }) {
                positions[id] = position
            }
        }
        return positions
    }

    public func mergeReconcileTail(
        _ tail: ReconcileTail, standby: StandbySession?, home: String
    ) throws(SessionStoreError) -> Int {
        let (journal, limits) = (self.journal, self.limits)
        let id = tail.session
        let outcome: Swift.Result<(changed: Int, added: Bool), SessionStoreError> = shard(for: id).sessions.withLock { sessions in
            var record: SessionRecord
            if let existing = sessions[id] {
                record = existing
            } else if let standby, standby.id == id {
                record = SessionRecord(restoring: standby, limits: limits)
                record.home = home
                record.epoch = standby.epoch + 1
                record.adoptedPosition = standby.appliedStamp
            } else {
                record = SessionRecord(
                    id: id, tenant: tail.tenant, home: home, epoch: tail.lastStamp.epoch + 1,
                    createdAtMilliseconds: tail.createdAtMilliseconds)
            }
            let added = sessions[id] == nil

            guard record.tenant == tail.tenant else {
                return .failure(SessionStoreError(.invalidWrite, session: id, "the reconcile tail names another tenant than session \(id)"))
            }
            let held = record.adoptedPosition?.seq ?? 0
            guard tail.isComplete || tail.sinceSeq <= held else {
                return .failure(
                    SessionStoreError(
                        .reconcilePositionUnknown, session: id,
                        "the tail starts after seq \(tail.sinceSeq), but this region holds session \(id) only up to seq \(held); ask for positions again"
                    ))
            }

            let changed = record.merge(tail, limits: limits)
            if changed > 0 || added {
                do throws(SessionLogError) {
                    try journal?.record(record.snapshotEntry, measuresLag: false)
                } catch {
                    return .failure(
                        SessionStoreError(
                            .notDurable, session: id, "the session log could not record the reconcile (\(error.detail)); retry later"))
                }
            }
            sessions[id] = record
            return .success((changed, added))
        }
        let (changed, added) = try outcome.get()
        if added { sessionCount.add(1, ordering: .relaxed) }
        return changed
    }

    public func removeAllSessions() throws(SessionStoreError) {
        for shard in shards {
            let removed = shard.sessions.withLock { sessions in
                defer { sessions.removeAll() }
                return sessions.count
            }
            sessionCount.subtract(removed, ordering: .relaxed)
        }
        do throws(SessionLogError) {
            try journal?.resetLog()
        } catch {
            throw SessionStoreError(
                .notDurable, session: nil, "the session log could not be emptied after reconcile (\(error.detail)); restart the node")
        }
    }

    public func sessionInfo(_ id: SessionID) throws(SessionStoreError) -> SessionInfo {
        try withSession(id) { record in record.info }
    }

    public func appendTurn(
        _ id: SessionID, _ draft: TurnDraft, nowMilliseconds: Int64
    ) throws(SessionStoreError) -> TurnAppendResult {
        try withMutation(id) { (record) throws(SessionStoreError) in
            let result = try record.appendTurn(draft, limits: limits, nowMilliseconds: nowMilliseconds)
            return (result, result.replayed ? nil : record.entry(result.turn.stamp, .turnAppended(result.turn)))
        }
    }

    public func readTurns(
        _ id: SessionID, _ selection: TurnSelection
    ) throws(SessionStoreError) -> (turns: [Turn], session: SessionInfo) {
        try withSession(id) { record in (record.turns(selection), record.info) }
    }

    public func writeLedgerEntry(
        _ id: SessionID, _ write: LedgerWrite, nowMilliseconds: Int64
    ) throws(SessionStoreError) -> LedgerWriteResult {
        try withMutation(id) { (record) throws(SessionStoreError) in
            let result = try record.writeLedgerEntry(write, limits: limits, nowMilliseconds: nowMilliseconds)
            return (result, result.applied ? record.entry(result.entry.stamp, .ledgerEntryWritten(result.entry)) : nil)
        }
    }

    public func ledgerEntry(_ id: SessionID, callID: String) throws(SessionStoreError) -> LedgerEntry {
        try withSession(id) { (record) throws(SessionStoreError) in
            guard let entry = record.ledger[callID] else {
                throw SessionStoreError(.entryNotFound, session: id, "session \(id) has no ledger entry \"\(callID)\"")
            }
            return entry
        }
    }

    public func ledgerEntries(_ id: SessionID) throws(SessionStoreError) -> [LedgerEntry] {
        try withSession(id) { record in record.ledger.values.sorted { $0.callID < $1.callID } }
    }

    public func putKVCacheRefs(
        _ id: SessionID, _ refs: [(block: Int64, location: String)], ttlMilliseconds: Int64, nowMilliseconds: Int64
    ) throws(SessionStoreError) -> [KVCacheRef] {
        try withMutation(id) { (record) throws(SessionStoreError) in
            let stored = try record.putKVCacheRefs(
                refs, ttlMilliseconds: ttlMilliseconds, limits: limits, nowMilliseconds: nowMilliseconds)
            // KV-cache refs are recomputable and not replicated; the journal
            // still takes their position so that copies stay contiguous.
            return (stored, stored.first.map { record.entry($0.stamp, .skipped) })
        }
    }

    public func kvCacheRefs(_ id: SessionID, nowMilliseconds: Int64) throws(SessionStoreError) -> [KVCacheRef] {
        try withSession(id) { record in
            record.purgeExpiredKVCacheRefs(nowMilliseconds: nowMilliseconds)
            return record.kvCacheRefs.values.sorted { $0.block < $1.block }
        }
    }

    public func kvCacheRef(_ id: SessionID, block: Int64, nowMilliseconds: Int64) throws(SessionStoreError) -> KVCacheRef {
        try withSession(id) { (record) throws(SessionStoreError) in
            guard let ref = record.kvCacheRefs[block], ref.expiresAtMilliseconds > nowMilliseconds else {
                throw SessionStoreError(.entryNotFound, session: id, "session \(id) has no unexpired KV-cache ref for block \(block)")
            }
            return ref
        }
    }

    public func putValue(
        _ id: SessionID, name: String, value: JSONValue, nowMilliseconds: Int64
    ) throws(SessionStoreError) -> SessionValue {
        try withMutation(id) { (record) throws(SessionStoreError) in
            let stored = try record.putValue(name: name, value: value, limits: limits, nowMilliseconds: nowMilliseconds)
            return (stored, record.entry(stored.stamp, .valuePut(stored)))
        }
    }

    public func value(_ id: SessionID, name: String) throws(SessionStoreError) -> SessionValue {
        try withSession(id) { (record) throws(SessionStoreError) in
            guard let value = record.values[name] else {
                throw SessionStoreError(.entryNotFound, session: id, "session \(id) has no value \"\(name)\"")
            }
            return value
        }
    }

    public func replicatedState(
        _ id: SessionID
    ) throws(SessionStoreError) -> (info: SessionInfo, turns: [Turn], ledger: [LedgerEntry], values: [SessionValue]) {
        try withSession(id) { record in
            (
                record.info, record.turns, record.ledger.values.sorted { $0.callID < $1.callID },
                record.values.values.sorted { $0.name < $1.name }
            )
        }
    }

    public func values(_ id: SessionID) throws(SessionStoreError) -> [SessionValue] {
        try withSession(id) { record in record.values.values.sorted { $0.name < $1.name } }
    }
}
