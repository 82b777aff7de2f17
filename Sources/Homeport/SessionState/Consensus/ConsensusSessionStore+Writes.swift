/// The writes of `ConsensusSessionStore`. Each decision mirrors the rule of
/// `SessionRecord` (same checks, order and messages), applied to the meta
/// record and the few records the write reads.
extension ConsensusSessionStore {
    // MARK: Sessions

    /// Creates the session in one transaction, which also puts the session
    /// counter key once, so that the key's version is the number of sessions
    /// created. The compare `versionLess(counter, maximumSessions)` caps it
    /// without reading it first, so concurrent creates in other regions cost
    /// no retry. `maximumSessions` thus bounds the sessions of every region
    /// that shares the prefix, not of this region alone.
    public func createSession(
        _ id: SessionID, tenant: TenantID, home: String, epoch: UInt64, nowMilliseconds: Int64
    ) async throws(SessionStoreError) -> SessionInfo {
        let metaKey = keys.meta(id)
        let meta = ConsensusSessionMeta(tenant: tenant, home: home, epoch: epoch, createdAtMilliseconds: nowMilliseconds)
        let encoded = ConsensusSessionCodec.encodeMeta(meta)

        return try await writeQueue.run(id) { () async throws(SessionStoreError) -> SessionInfo in
            let result = try await transaction(
                id, "create",
                compares: [.absent(metaKey), .versionLess(keys.sessionCounter, than: Int64(limits.maximumSessions))],
                success: [.put(metaKey, value: encoded), .put(keys.sessionCounter, value: Array(id.rawValue.utf8))],
                failure: [.get(metaKey), .get(keys.sessionCounter)])

            guard result.succeeded else {
                if case .get(let existing?)? = result.results.first, existing.key == metaKey {
                    throw SessionStoreError(.sessionExists, session: id, "session \(id) exists already")
                }
                var held: Int64 = 0
                if case .get(let counter?)? = result.results.last { held = counter.version }
                throw SessionStoreError(
                    .limitExceeded, session: id,
                    "the session store holds \(held) sessions, the configured maximum of \(limits.maximumSessions)")
            }

            cache.store(id, KnownSessionState(meta: meta, metaRevision: result.revision, metaBytes: encoded.count))
            let info = meta.info(id)
            record(.sessionCreated(info))
            return info
        }
    }

    // MARK: Conversation buffer

    public func appendTurn(
        _ id: SessionID, _ draft: TurnDraft, nowMilliseconds: Int64
    ) async throws(SessionStoreError) -> TurnAppendResult {
        let keyRecord = draft.idempotencyKey.map { self.keys.idempotency(id, key: $0) }
        let (keys, limits) = (self.keys, self.limits)
        return try await mutate(id, "append", records: keyRecord.map { [$0] } ?? []) { (state) throws(SessionStoreError) in
            try Self.decideAppend(
                id, draft, state: state, keyRecord: keyRecord, keys: keys, limits: limits, nowMilliseconds: nowMilliseconds)
        }
    }

    static func decideAppend(
        _ id: SessionID, _ draft: TurnDraft, state: KnownSessionState, keyRecord: String?, keys: ConsensusSessionKeys,
        limits: SessionStoreLimits, nowMilliseconds: Int64
    ) throws(SessionStoreError) -> Decision<TurnAppendResult> {
        let contentBytes = draft.content.utf8.count
        let contentHash = SessionRecord.contentHash(draft.content) ^ SessionRecord.metadataHash(draft.metadata)

        // A retry returns the turn that the key first stored. A record whose
        // ordinal is below the first one kept is forgotten.
        if let key = draft.idempotencyKey, let keyRecord, let stored = state.record(keyRecord) ?? nil {
            let first = try decode(id) { () throws(ConsensusRecordError) in try ConsensusSessionCodec.decodeIdempotencyRecord(stored) }
            if first.ordinal >= state.meta.idempotencyFirstOrdinal {
                guard first.role == draft.role, first.tokens == draft.tokens, first.contentBytes == contentBytes,
                    first.contentHash == contentHash
                else {
                    throw SessionStoreError(
                        .idempotencyKeyReused, session: id,
                        "idempotency key \"\(key)\" was first used for a different turn (\(first.stamp)); use a new key for a new turn")
                }
                guard state.meta.turns.contains(where: { $0.stamp == first.stamp }) else {
                    throw SessionStoreError(
                        .limitExceeded, session: id,
                        "the turn first stored with idempotency key \"\(key)\" (\(first.stamp)) was dropped by the buffer's drop-oldest limit"
                    )
                }
                let turnKey = keys.turn(id, first.stamp)
                guard let known = state.record(turnKey) else { return .needs([turnKey]) }
                guard let turnRecord = known else {
                    throw SessionStoreError(
                        .storeUnavailable, session: id,
                        "turn \(first.stamp) of session \(id) is in the turn index but its key is missing; the session's records are damaged"
                    )
                }
                let turn = try decode(id) { () throws(ConsensusRecordError) in try ConsensusSessionCodec.decodeTurn(turnRecord) }
                return .unchanged(.success(TurnAppendResult(turn: turn, replayed: true)))
            }
        }

        guard contentBytes <= limits.maximumTurnBytes else {
            throw SessionStoreError(
                .limitExceeded, session: id,
                "the turn's content is \(contentBytes) bytes; the maximum per turn is \(limits.maximumTurnBytes)")
        }
        var meta = state.meta
        let dropCount = try turnsToDrop(id, meta: meta, contentBytes: contentBytes, limits: limits)
        let dropped = meta.turns.prefix(dropCount).map(\.stamp)
        meta.turns.removeFirst(dropCount)

        let turn = Turn(
            stamp: meta.nextStamp(), role: draft.role, content: draft.content, tokens: draft.tokens,
            createdAtMilliseconds: nowMilliseconds, metadata: draft.metadata, idempotencyKey: draft.idempotencyKey)
        meta.turns.append(ConsensusSessionMeta.TurnPosition(stamp: turn.stamp, contentBytes: contentBytes))
        var change = SessionChange(meta: meta, puts: [(keys.turn(id, turn.stamp), ConsensusSessionCodec.encodeTurn(turn))])

        if let keyRecord {
            let record = ConsensusSessionCodec.IdempotencyRecord(
                ordinal: change.meta.rememberIdempotencyKey(limits: limits), stamp: turn.stamp, role: draft.role, tokens: draft.tokens,
                contentBytes: contentBytes, contentHash: contentHash)
            change.puts.append((keyRecord, ConsensusSessionCodec.encodeIdempotencyRecord(record)))
        }

        // The dropped turns leave the index now; their keys go in this
        // transaction while it has room, and in later writes otherwise.
        change.meta.droppedTurns += dropped
        change.journalEntry = ReplicationEntry(
            session: id, tenant: meta.tenant, home: meta.home, stamp: turn.stamp, payload: .turnAppended(turn))
        return .write(change, TurnAppendResult(turn: turn, replayed: false))
    }

    /// Returns how many of the oldest turns to drop to make room for a turn
    /// of `contentBytes`, as `SessionRecord` does, or throws `limitExceeded`
    /// when the overflow policy is reject.
    static func turnsToDrop(
        _ id: SessionID, meta: ConsensusSessionMeta, contentBytes: Int, limits: SessionStoreLimits
    ) throws(SessionStoreError) -> Int {
        try limits.turnsToDrop(
            session: id, turnCount: meta.turns.count, bufferBytes: meta.bufferBytes, contentBytes: contentBytes,
            bytesOfTurn: { meta.turns[$0].contentBytes })
    }

    /// Runs a decoder, turning its error into `storeUnavailable` for the session.
    static func decode<Value>(
        _ id: SessionID, _ body: () throws(ConsensusRecordError) -> Value
    ) throws(SessionStoreError) -> Value {
        do throws(ConsensusRecordError) {
            return try body()
        } catch {
            throw malformed(error, session: id)
        }
    }

    // MARK: Tool-call ledger

    public func writeLedgerEntry(
        _ id: SessionID, _ write: LedgerWrite, nowMilliseconds: Int64
    ) async throws(SessionStoreError) -> LedgerWriteResult {
        let entryKey = keys.ledger(id, callID: write.callID)
        let limits = self.limits
        return try await mutate(id, "ledger write", records: [entryKey]) { (state) throws(SessionStoreError) in
            let existing = try (state.record(entryKey) ?? nil).map { (bytes) throws(SessionStoreError) in
                try Self.decode(id) { () throws(ConsensusRecordError) in try ConsensusSessionCodec.decodeLedgerEntry(bytes) }
            }
            return try Self.decideLedgerWrite(
                id, write, existing: existing, state: state, entryKey: entryKey, limits: limits, nowMilliseconds: nowMilliseconds)
        }
    }

    static func decideLedgerWrite(
        _ id: SessionID, _ write: LedgerWrite, existing: LedgerEntry?, state: KnownSessionState, entryKey: String,
        limits: SessionStoreLimits, nowMilliseconds: Int64
    ) throws(SessionStoreError) -> Decision<LedgerWriteResult> {
        // The limit is on the entry as stored: its arguments (kept from the
        // first write that carried them) plus its result (the latest one).
        let arguments = existing.flatMap { $0.arguments == .null ? nil : $0.arguments } ?? write.arguments
        let result = write.result ?? existing?.result
        let payloadBytes = (arguments?.serializedBytes().count ?? 0) + (result?.serializedBytes().count ?? 0)
        guard payloadBytes <= limits.maximumLedgerEntryBytes else {
            throw SessionStoreError(
                .limitExceeded, session: id,
                "ledger entry \"\(write.callID)\" would hold \(payloadBytes) bytes of arguments and result; the maximum is \(limits.maximumLedgerEntryBytes)"
            )
        }

        var meta = state.meta
        guard var entry = existing else {
            guard let name = write.name else {
                throw SessionStoreError(
                    .invalidWrite, session: id,
                    "ledger entry \"\(write.callID)\" is new, so the write must carry the tool's \"name\"")
            }
            guard meta.ledgerCount < limits.maximumLedgerEntries else {
                throw SessionStoreError(.limitExceeded, session: id, "session \(id) holds \(meta.ledgerCount) ledger entries, the maximum")
            }
            let created = LedgerEntry(
                callID: write.callID, name: name, arguments: write.arguments ?? .null, status: write.status, result: write.result,
                stamp: meta.nextStamp(), updatedAtMilliseconds: nowMilliseconds)
            meta.ledgerCount += 1
            return .write(ledgerChange(id, created, meta: meta, entryKey: entryKey), LedgerWriteResult(entry: created, applied: true))
        }

        if let name = write.name, name != entry.name {
            throw SessionStoreError(
                .ledgerConflict, session: id, "ledger entry \"\(write.callID)\" is a call of \"\(entry.name)\", not \"\(name)\"")
        }

        // Two different terminal states: the call cannot have ended twice.
        if entry.status.isTerminal, write.status.isTerminal, entry.status != write.status {
            throw SessionStoreError(
                .ledgerConflict, session: id,
                "ledger entry \"\(write.callID)\" already ended as \(entry.status.rawValue); it cannot also end as \(write.status.rawValue)"
            )
        }

        // An older or equal status (a late or repeated write) changes nothing.
        guard write.status.rank > entry.status.rank else {
            return .unchanged(.success(LedgerWriteResult(entry: entry, applied: false)))
        }

        entry.status = write.status
        if let result = write.result { entry.result = result }
        if entry.arguments == .null, let arguments = write.arguments { entry.arguments = arguments }
        entry.stamp = meta.nextStamp()
        entry.updatedAtMilliseconds = nowMilliseconds
        return .write(ledgerChange(id, entry, meta: meta, entryKey: entryKey), LedgerWriteResult(entry: entry, applied: true))
    }

    private static func ledgerChange(_ id: SessionID, _ entry: LedgerEntry, meta: ConsensusSessionMeta, entryKey: String) -> SessionChange {
        SessionChange(
            meta: meta, puts: [(entryKey, ConsensusSessionCodec.encodeLedgerEntry(entry))],
            journalEntry: ReplicationEntry(
                session: id, tenant: meta.tenant, home: meta.home, stamp: entry.stamp, payload: .ledgerEntryWritten(entry)))
    }

    // MARK: KV-cache refs

    /// Stores the refs in the session's one refs record. Expired refs are
    /// left out of the record whenever it is written, and never returned.
    public func putKVCacheRefs(
        _ id: SessionID, _ refs: [(block: Int64, location: String)], ttlMilliseconds: Int64, nowMilliseconds: Int64
    ) async throws(SessionStoreError) -> [KVCacheRef] {
        let refsKey = keys.kvCacheRefs(id)
        let limits = self.limits
        return try await mutate(id, "KV-cache ref put", records: [refsKey]) { (state) throws(SessionStoreError) -> Decision<[KVCacheRef]> in
            guard !refs.isEmpty else { return .unchanged(.success([])) }

            var held: [Int64: KVCacheRef] = [:]
            if let stored = state.record(refsKey) ?? nil {
                held = try Self.decode(id) { () throws(ConsensusRecordError) in try ConsensusSessionCodec.decodeKVCacheRefs(stored) }
            }
            held = held.filter { $0.value.expiresAtMilliseconds > nowMilliseconds }

            let newBlocks = Set(refs.map(\.block)).filter { held[$0] == nil }
            guard held.count + newBlocks.count <= limits.maximumKVCacheRefs else {
                throw SessionStoreError(
                    .limitExceeded, session: id,
                    "session \(id) holds \(held.count) KV-cache refs; adding \(newBlocks.count) would pass the maximum of \(limits.maximumKVCacheRefs)"
                )
            }

            var meta = state.meta
            let stamp = meta.nextStamp()
            var stored: [KVCacheRef] = []
            stored.reserveCapacity(refs.count)
            for (block, location) in refs {
                let ref = KVCacheRef(
                    block: block, location: location, stamp: stamp, expiresAtMilliseconds: nowMilliseconds + ttlMilliseconds)
                held[block] = ref
                stored.append(ref)
            }

            // KV-cache refs are recomputable and not replicated; the journal
            // still takes their position so that copies stay contiguous.
            let change = SessionChange(
                meta: meta, puts: [(refsKey, ConsensusSessionCodec.encodeKVCacheRefs(held))],
                journalEntry: ReplicationEntry(session: id, tenant: meta.tenant, home: meta.home, stamp: stamp, payload: .skipped))
            return .write(change, stored)
        }
    }

    // MARK: Session values

    public func putValue(
        _ id: SessionID, name: String, value: JSONValue, nowMilliseconds: Int64
    ) async throws(SessionStoreError) -> SessionValue {
        let valueKey = keys.value(id, name: name)
        let limits = self.limits
        return try await mutate(id, "value put", records: [valueKey]) { (state) throws(SessionStoreError) -> Decision<SessionValue> in
            let bytes = value.serializedBytes().count
            guard bytes <= limits.maximumValueBytes else {
                throw SessionStoreError(
                    .limitExceeded, session: id,
                    "value \"\(name)\" is \(bytes) bytes serialised; the maximum is \(limits.maximumValueBytes)")
            }
            var meta = state.meta
            let exists = (state.record(valueKey) ?? nil) != nil
            guard exists || meta.valueCount < limits.maximumValues else {
                throw SessionStoreError(.limitExceeded, session: id, "session \(id) holds \(meta.valueCount) values, the maximum")
            }

            let stored = SessionValue(name: name, value: value, stamp: meta.nextStamp(), updatedAtMilliseconds: nowMilliseconds)
            if !exists { meta.valueCount += 1 }
            let change = SessionChange(
                meta: meta, puts: [(valueKey, ConsensusSessionCodec.encodeValue(stored))],
                journalEntry: ReplicationEntry(
                    session: id, tenant: meta.tenant, home: meta.home, stamp: stored.stamp, payload: .valuePut(stored)))
            return .write(change, stored)
        }
    }

    // MARK: Forgotten idempotency keys

    /// Deletes the records of forgotten idempotency keys once they reach a
    /// quarter of the keys kept, so that a long drop-oldest session keeps a
    /// bounded number. Lookups already treat them as absent, so this only
    /// frees space: a lost compare or an error leaves them for the next append.
    func purgeForgottenIdempotencyKeys(_ id: SessionID, _ state: KnownSessionState) async {
        let batch = max(ConsensusSessionMeta.idempotencyCapacity(limits) / 4, 16)
        guard state.meta.idempotencyFirstOrdinal - state.meta.idempotencyPurgedOrdinal >= batch else { return }

        do throws(SessionStoreError) {
            let metaKey = keys.meta(id)
            let read = try await transaction(
                id, "idempotency key cleanup", compares: [.modRevision(metaKey, equals: state.metaRevision)],
                success: [.range(KeyRange(prefix: keys.idempotencyPrefix(id)))])
            guard read.succeeded, case .range(let records)? = read.results.first else { return }

            var forgotten: [String] = []
            for keyValue in records {
                let record = try Self.decode(id) { () throws(ConsensusRecordError) in
                    try ConsensusSessionCodec.decodeIdempotencyRecord(keyValue.value)
                }
                if record.ordinal < state.meta.idempotencyFirstOrdinal { forgotten.append(keyValue.key) }
            }

            let deleted = forgotten.prefix(Self.maximumOperationsPerTransaction - 1)
            var meta = state.meta
            if deleted.count == forgotten.count { meta.idempotencyPurgedOrdinal = meta.idempotencyFirstOrdinal }
            let encoded = ConsensusSessionCodec.encodeMeta(meta)
            let result = try await transaction(
                id, "idempotency key cleanup", compares: [.modRevision(metaKey, equals: state.metaRevision)],
                success: deleted.map { .delete($0) } + [.put(metaKey, value: encoded)])
            guard result.succeeded else { return }

            var next = state
            next.meta = meta
            next.metaRevision = result.revision
            next.metaBytes = encoded.count
            for key in deleted where next.records[key] != nil { next.records[key] = .some(nil) }
            cache.store(id, next)
        } catch {
            logger?.warning("cleanup of forgotten idempotency keys failed", ["session": id.rawValue, "error": error.description])
        }
    }
}
