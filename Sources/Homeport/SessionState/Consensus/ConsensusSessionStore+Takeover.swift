/// The operations that takeover and reconcile-forward use. With sessions
/// behind consensus no region takes another's sessions over, so these run
/// only when a deployment moves between designs or in tests. They build a
/// whole `SessionRecord`, apply its rules, and write the difference.
extension ConsensusSessionStore {
    // MARK: Whole sessions

    /// A session read whole, with what it takes to write it back.
    struct StoredSession {
        var record: SessionRecord
        var meta: ConsensusSessionMeta
        var metaRevision: Int64
        /// The ordinal of each remembered idempotency key.
        var ordinals: [String: UInt64]
    }

    /// Reads every record of the session but its KV-cache refs in one
    /// transaction. Returns nil when the session does not exist.
    func readWholeSession(_ id: SessionID, _ operation: String) async throws(SessionStoreError) -> StoredSession? {
        let result = try await transaction(
            id, operation, compares: [],
            success: [
                .get(keys.meta(id)), .range(KeyRange(prefix: keys.turnPrefix(id))), .range(KeyRange(prefix: keys.ledgerPrefix(id))),
                .range(KeyRange(prefix: keys.valuePrefix(id))), .range(KeyRange(prefix: keys.idempotencyPrefix(id))),
            ])
        guard result.results.count == 5, case .get(let metaKeyValue) = result.results[0] else { throw Self.unexpectedResult(id) }
        guard metaKeyValue != nil else { return nil }
        let state = try decodeState(id, meta: metaKeyValue)
        let meta = state.meta

        var record = SessionRecord(
            id: id, tenant: meta.tenant, home: meta.home, epoch: meta.epoch, createdAtMilliseconds: meta.createdAtMilliseconds)
        record.lastSeq = meta.lastSeq
        record.turns = try heldTurns(id, meta: meta, try Self.rangeResult(result.results[1], id))
        record.bufferBytes = record.turns.reduce(0) { $0 + $1.content.utf8.count }
        record.ledger = Dictionary(
            uniqueKeysWithValues: try decodeLedger(id, try Self.rangeResult(result.results[2], id)).map { ($0.callID, $0) })
        record.values = Dictionary(
            uniqueKeysWithValues: try decodeValues(id, try Self.rangeResult(result.results[3], id)).map { ($0.name, $0) })
        record.replicationGap = meta.replicationGap
        record.adoptedPosition = meta.adoptedPosition

        var remembered: [(key: String, record: ConsensusSessionCodec.IdempotencyRecord)] = []
        let prefixBytes = keys.idempotencyPrefix(id).utf8.count
        for keyValue in try Self.rangeResult(result.results[4], id) {
            let stored = try Self.decode(id) { () throws(ConsensusRecordError) in
                try ConsensusSessionCodec.decodeIdempotencyRecord(keyValue.value)
            }
            guard stored.ordinal >= meta.idempotencyFirstOrdinal else { continue }
            remembered.append((String(decoding: Array(keyValue.key.utf8).dropFirst(prefixBytes), as: UTF8.self), stored))
        }
        remembered.sort { $0.record.ordinal < $1.record.ordinal }
        for (key, stored) in remembered {
            record.idempotencyKeys[key] = SessionRecord.IdempotencyRecord(
                stamp: stored.stamp, role: stored.role, tokens: stored.tokens, contentBytes: stored.contentBytes,
                contentHash: stored.contentHash)
        }
        record.idempotencyKeyOrder = remembered.map(\.key)

        return StoredSession(
            record: record, meta: meta, metaRevision: state.metaRevision,
            ordinals: Dictionary(uniqueKeysWithValues: remembered.map { ($0.key, $0.record.ordinal) }))
    }

    /// Returns the meta record and the records to put for `record`: all of
    /// them for a new session, or those that differ from `previous`.
    func changes(_ id: SessionID, to record: SessionRecord, from previous: StoredSession?) -> (
        meta: ConsensusSessionMeta, puts: [(key: String, value: [UInt8])]
    ) {
        var meta =
            previous?.meta
            ?? ConsensusSessionMeta(
                tenant: record.tenant, home: record.home, epoch: record.epoch, createdAtMilliseconds: record.createdAtMilliseconds)
        meta.home = record.home
        meta.epoch = record.epoch
        meta.lastSeq = record.lastSeq
        meta.replicationGap = record.replicationGap
        meta.adoptedPosition = record.adoptedPosition
        meta.turns = record.turns.map { ConsensusSessionMeta.TurnPosition(stamp: $0.stamp, contentBytes: $0.content.utf8.count) }
        meta.ledgerCount = record.ledger.count
        meta.valueCount = record.values.count

        var puts: [(key: String, value: [UInt8])] = []
        let heldStamps = Set(previous?.record.turns.map(\.stamp) ?? [])
        for turn in record.turns where !heldStamps.contains(turn.stamp) {
            puts.append((keys.turn(id, turn.stamp), ConsensusSessionCodec.encodeTurn(turn)))
        }
        for entry in record.ledger.values where previous?.record.ledger[entry.callID] != entry {
            puts.append((keys.ledger(id, callID: entry.callID), ConsensusSessionCodec.encodeLedgerEntry(entry)))
        }
        for value in record.values.values where previous?.record.values[value.name] != value {
            puts.append((keys.value(id, name: value.name), ConsensusSessionCodec.encodeValue(value)))
        }

        // Keys remembered before keep their ordinals; new ones take the next.
        // `SessionRecord` forgets from the front of its order, so the first
        // key of the order has the first ordinal kept.
        var ordinals = previous?.ordinals ?? [:]
        for key in record.idempotencyKeyOrder where ordinals[key] == nil {
            guard let remembered = record.idempotencyKeys[key] else { continue }
            let ordinal = meta.idempotencyNextOrdinal
            meta.idempotencyNextOrdinal += 1
            ordinals[key] = ordinal
            let stored = ConsensusSessionCodec.IdempotencyRecord(
                ordinal: ordinal, stamp: remembered.stamp, role: remembered.role, tokens: remembered.tokens,
                contentBytes: remembered.contentBytes, contentHash: remembered.contentHash)
            puts.append((keys.idempotency(id, key: key), ConsensusSessionCodec.encodeIdempotencyRecord(stored)))
        }
        meta.idempotencyFirstOrdinal = record.idempotencyKeyOrder.first.flatMap { ordinals[$0] } ?? meta.idempotencyNextOrdinal
        return (meta, puts)
    }

    /// Throws `limitExceeded` when a whole-session write has more records
    /// than fit in one transaction.
    func checkFitsOneTransaction(_ id: SessionID, puts: Int, operation: String) throws(SessionStoreError) {
        // NOTE: an adoption or reconcile that writes more records than fit
        // in one transaction is rejected rather than split, because a split
        // write would be visible half done. With sessions behind consensus
        // neither runs in normal operation.
        guard puts + 2 <= Self.maximumOperationsPerTransaction else {
            throw SessionStoreError(
                .limitExceeded, session: id,
                "the \(operation) of session \(id) writes \(puts) records, more than the \(Self.maximumOperationsPerTransaction - 2) one transaction of the linearizable store holds"
            )
        }
    }

    // MARK: Takeover

    public func adopt(
        _ copy: StandbySession, home: String, epoch: UInt64, replicationGap: Bool
    ) async throws(SessionStoreError) -> SessionInfo {
        let id = copy.id
        let metaKey = keys.meta(id)
        var record = SessionRecord(restoring: copy, limits: limits)
        record.home = home
        record.epoch = epoch
        record.adoptedPosition = copy.appliedStamp
        record.replicationGap = replicationGap
        let (meta, puts) = changes(id, to: record, from: nil)
        let encoded = ConsensusSessionCodec.encodeMeta(meta)

        return try await writeQueue.run(id) { () async throws(SessionStoreError) -> SessionInfo in
            // A session that is here already is returned as it is.
            if puts.count + 2 > Self.maximumOperationsPerTransaction {
                if let existing = try await existingInfo(id) { return existing }
                try checkFitsOneTransaction(id, puts: puts.count, operation: "adoption")
            }

            let result = try await transaction(
                id, "adoption", compares: [.absent(metaKey)],
                success: puts.map { .put($0.key, value: $0.value) } + [
                    .put(metaKey, value: encoded), .put(keys.sessionCounter, value: Array(id.rawValue.utf8)),
                ],
                failure: [.get(metaKey)])
            guard result.succeeded else {
                guard case .get(let existing)? = result.results.first else { throw Self.unexpectedResult(id) }
                let state = try decodeState(id, meta: existing)
                cache.store(id, state)
                return state.meta.info(id)
            }

            cache.store(id, KnownSessionState(meta: meta, metaRevision: result.revision, metaBytes: encoded.count))
            self.record(record.snapshotEntry)
            return record.info
        }
    }

    /// Returns the session's info, or nil when it does not exist.
    private func existingInfo(_ id: SessionID) async throws(SessionStoreError) -> SessionInfo? {
        do throws(SessionStoreError) {
            return try await sessionInfo(id)
        } catch  where error.code == .sessionNotFound {
            return nil
        }
    }

    /// Returns the ids of every session under the prefix, of every region.
    public func sessionIDs() async throws(SessionStoreError) -> [SessionID] {
        let metas: [KeyValue]
        do {
            metas = try await store.range(prefix: keys.metaPrefix)
        } catch {
            throw Self.storeError(error, session: nil, operation: "session listing")
        }
        return metas.compactMap { keys.sessionID(ofMetaKey: $0.key) }.sorted()
    }

    public func adoptedPositions(_ ids: [SessionID]) async throws(SessionStoreError) -> [SessionID: SessionStamp] {
        var positions: [SessionID: SessionStamp] = [:]
        var start = 0
        while start < ids.count {
            let batch = Array(ids[start..<min(start + Self.maximumOperationsPerTransaction, ids.count)])
            start += batch.count
            let result = try await transaction(nil, "adopted position read", compares: [], success: batch.map { .get(keys.meta($0)) })
            for (id, read) in zip(batch, result.results) {
                guard case .get(let keyValue) = read else { throw Self.unexpectedResult(id) }
                guard keyValue != nil else { continue }
                if let position = try decodeState(id, meta: keyValue).meta.adoptedPosition {
                    positions[id] = position
                }
            }
        }
        return positions
    }

    // MARK: Reconcile

    public func mergeReconcileTail(
        _ tail: ReconcileTail, standby: StandbySession?, home: String
    ) async throws(SessionStoreError) -> Int {
        let id = tail.session
        let metaKey = keys.meta(id)
        let limits = self.limits

        return try await writeQueue.run(id) { () async throws(SessionStoreError) -> Int in
            for attempt in 0..<Self.maximumAttempts {
                let stored = try await readWholeSession(id, "reconcile merge")
                var record: SessionRecord
                if let stored {
                    record = stored.record
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
                let added = stored == nil

                guard record.tenant == tail.tenant else {
                    throw SessionStoreError(.invalidWrite, session: id, "the reconcile tail names another tenant than session \(id)")
                }
                let held = record.adoptedPosition?.seq ?? 0
                guard tail.isComplete || tail.sinceSeq <= held else {
                    throw SessionStoreError(
                        .reconcilePositionUnknown, session: id,
                        "the tail starts after seq \(tail.sinceSeq), but this region holds session \(id) only up to seq \(held); ask for positions again"
                    )
                }

                let changed = record.merge(tail, limits: limits)
                let (meta, puts) = changes(id, to: record, from: stored)
                if let stored, puts.isEmpty, meta == stored.meta { return changed }
                try checkFitsOneTransaction(id, puts: puts.count, operation: "reconcile merge")

                let encoded = ConsensusSessionCodec.encodeMeta(meta)
                var writes: [TransactionOperation] = puts.map { .put($0.key, value: $0.value) } + [.put(metaKey, value: encoded)]
                if added { writes.append(.put(keys.sessionCounter, value: Array(id.rawValue.utf8))) }
                let guardCompare: TransactionCompare =
                    stored.map { .modRevision(metaKey, equals: $0.metaRevision) } ?? .absent(metaKey)
                let result = try await transaction(id, "reconcile merge", compares: [guardCompare], success: writes)
                guard result.succeeded else {
                    if attempt >= 1 { try? await Task.sleep(for: .milliseconds(Int.random(in: 1...10))) }
                    continue
                }

                cache.store(id, KnownSessionState(meta: meta, metaRevision: result.revision, metaBytes: encoded.count))
                if changed > 0 || added {
                    self.record(record.snapshotEntry, measuresLag: false)
                }
                return changed
            }
            throw SessionStoreError(
                .storeUnavailable, session: id,
                "the reconcile merge of session \(id) lost to concurrent writes \(Self.maximumAttempts) times; retry later")
        }
    }

    // MARK: Removal

    /// Removes every session under the prefix, of every region that shares
    /// it, and empties the journal's session log.
    ///
    /// Each session's records go first and its meta record last, in a
    /// transaction guarded by the meta revision, so a session is either
    /// readable or gone, and a write that lands meanwhile makes the removal
    /// of that session start over.
    ///
    /// NOTE: sessions created by another region while this runs may survive
    /// it, and the session counter then undercounts them.
    public func removeAllSessions() async throws(SessionStoreError) {
        for id in try await sessionIDs() {
            try await removeSession(id)
        }
        do {
            _ = try await store.delete(keys.sessionCounter)
        } catch {
            throw Self.storeError(error, session: nil, operation: "removal of the session counter")
        }
        cache.removeAll()

        do throws(SessionLogError) {
            try journal?.resetLog()
        } catch {
            throw SessionStoreError(
                .notDurable, session: nil, "the session log could not be emptied after reconcile (\(error.detail)); restart the node")
        }
    }

    private func removeSession(_ id: SessionID) async throws(SessionStoreError) {
        let metaKey = keys.meta(id)
        try await writeQueue.run(id) { () async throws(SessionStoreError) in
            for _ in 0..<Self.maximumAttempts {
                let read = try await transaction(
                    id, "removal", compares: [], success: [.get(metaKey), .range(KeyRange(prefix: keys.data(id)))])
                guard read.results.count == 2, case .get(let meta) = read.results[0] else { throw Self.unexpectedResult(id) }
                let records = try Self.rangeResult(read.results[1], id).map(\.key)

                var start = 0
                while start < records.count {
                    let batch = records[start..<min(start + Self.maximumOperationsPerTransaction, records.count)]
                    start += batch.count
                    _ = try await transaction(id, "removal", compares: [], success: batch.map { .delete($0) })
                }

                guard let meta else { return }
                let removed = try await transaction(
                    id, "removal", compares: [.modRevision(metaKey, equals: meta.modRevision)], success: [.delete(metaKey)])
                if removed.succeeded {
                    cache.remove(id)
                    return
                }
            }
            throw SessionStoreError(
                .storeUnavailable, session: id,
                "the removal of session \(id) lost to concurrent writes \(Self.maximumAttempts) times; retry later")
        }
    }
}
