/// The reads of `ConsensusSessionStore`: each is one transaction that gets
/// the session's meta record and the records asked for at one revision.
extension ConsensusSessionStore {
    /// Reads the meta record and `reads` in one transaction, and refreshes
    /// the cached state with the meta record and the `cachedRecords` keys
    /// among `reads`. Throws `sessionNotFound` when the session does not exist.
    func readSession(
        _ id: SessionID, _ operation: String, _ reads: [TransactionOperation], cachedRecords: [String] = []
    ) async throws(SessionStoreError) -> (state: KnownSessionState, results: [TransactionOperationResult]) {
        let result = try await transaction(id, operation, compares: [], success: [.get(keys.meta(id))] + reads)
        guard result.results.count == reads.count + 1, case .get(let meta) = result.results[0] else {
            throw Self.unexpectedResult(id)
        }
        var state = try decodeState(id, meta: meta)
        let results = Array(result.results.dropFirst())
        for (operation, result) in zip(reads, results) {
            if case .get(let key) = operation, cachedRecords.contains(key), case .get(let keyValue) = result {
                state.records[key] = .some(keyValue?.value)
            }
        }
        cache.store(id, state)
        return (state, results)
    }

    /// Returns the range's keys from a read's result.
    static func rangeResult(_ result: TransactionOperationResult?, _ id: SessionID) throws(SessionStoreError) -> [KeyValue] {
        guard case .range(let keyValues)? = result else { throw unexpectedResult(id) }
        return keyValues
    }

    /// Returns the key's record from a read's result, nil when the key is absent.
    static func getResult(_ result: TransactionOperationResult?, _ id: SessionID) throws(SessionStoreError) -> [UInt8]? {
        guard case .get(let keyValue)? = result else { throw unexpectedResult(id) }
        return keyValue?.value
    }

    public func sessionInfo(_ id: SessionID) async throws(SessionStoreError) -> SessionInfo {
        try await readSession(id, "info read", []).state.meta.info(id)
    }

    // MARK: Conversation buffer

    /// Reads the selected turns with one range: all turn keys, the keys from
    /// `seq + 1` on, or the keys of the last `count` turns. Turn keys sort by
    /// seq, then epoch, so only `tail` depends on the buffer's order matching
    /// the key order. When a reconcile has broken that order, `tail` reads
    /// every turn.
    ///
    /// For `tail`, a cached state gives the key of the `count`-th last turn,
    /// and the range runs from there; a turn appended since only adds to it.
    /// Without one, the range takes the last `count` keys, which etcd finds by
    /// sorting the whole range (etcd 3.4 applies a limit after a descending
    /// sort), so it costs the server more.
    public func readTurns(
        _ id: SessionID, _ selection: TurnSelection
    ) async throws(SessionStoreError) -> (turns: [Turn], session: SessionInfo) {
        let everyTurn = KeyRange(prefix: keys.turnPrefix(id))
        var range: KeyRange?
        switch selection {
        case .all:
            range = everyTurn
        case .tail(let count):
            guard count > 0 else { break }
            if let cached = cache.state(id)?.meta {
                guard cached.turnKeysFollowBufferOrder, let first = cached.turns.suffix(count).first else {
                    range = everyTurn
                    break
                }
                range = KeyRange(prefix: everyTurn.prefix, start: keys.turn(id, first.stamp))
            } else {
                range = KeyRange(prefix: everyTurn.prefix, limit: count, descending: true)
            }
        case .since(let seq):
            guard seq < UInt64.max else { break }
            range = KeyRange(prefix: everyTurn.prefix, start: keys.firstTurn(id, seq: seq + 1))
        }

        let (state, results) = try await readSession(id, "turn read", range.map { [.range($0)] } ?? [])
        let meta = state.meta
        let turns = range == nil ? [] : try heldTurns(id, meta: meta, try Self.rangeResult(results.first, id))
        switch selection {
        case .all, .since:
            return (turns, meta.info(id))
        case .tail(let count):
            // With the keys out of buffer order, or the last turns missing
            // from the range, read them all.
            let found = Set(turns.map(\.stamp))
            let lastTurnsFound = meta.turns.suffix(count).allSatisfy { found.contains($0.stamp) }
            if range != everyTurn, !meta.turnKeysFollowBufferOrder || !lastTurnsFound {
                let (again, allResults) = try await readSession(id, "turn read", [.range(everyTurn)])
                let all = try heldTurns(id, meta: again.meta, try Self.rangeResult(allResults.first, id))
                return (Array(all.suffix(count)), again.meta.info(id))
            }
            return (Array(turns.suffix(count)), meta.info(id))
        }
    }

    /// Decodes the turn records that the meta record's index lists, in
    /// buffer order, skipping turns dropped earlier whose keys remain.
    func heldTurns(_ id: SessionID, meta: ConsensusSessionMeta, _ records: [KeyValue]) throws(SessionStoreError) -> [Turn] {
        let held = Set(meta.turns.map(\.stamp))
        var turns: [Turn] = []
        turns.reserveCapacity(min(records.count, held.count))
        for keyValue in records {
            let turn = try Self.decode(id) { () throws(ConsensusRecordError) in try ConsensusSessionCodec.decodeTurn(keyValue.value) }
            if held.contains(turn.stamp) { turns.append(turn) }
        }
        return turns.sorted { $0.stamp < $1.stamp }
    }

    // MARK: Tool-call ledger

    public func ledgerEntry(_ id: SessionID, callID: String) async throws(SessionStoreError) -> LedgerEntry {
        let entryKey = keys.ledger(id, callID: callID)
        // A call id too long for a key cannot have been stored.
        let fits = entryKey.utf8.count <= LinearizableStoreLimits.maximumKeyBytes
        let (_, results) = try await readSession(id, "ledger read", fits ? [.get(entryKey)] : [], cachedRecords: [entryKey])
        guard fits, let bytes = try Self.getResult(results.first, id) else {
            throw SessionStoreError(.entryNotFound, session: id, "session \(id) has no ledger entry \"\(callID)\"")
        }
        return try Self.decode(id) { () throws(ConsensusRecordError) in try ConsensusSessionCodec.decodeLedgerEntry(bytes) }
    }

    public func ledgerEntries(_ id: SessionID) async throws(SessionStoreError) -> [LedgerEntry] {
        let (_, results) = try await readSession(id, "ledger read", [.range(KeyRange(prefix: keys.ledgerPrefix(id)))])
        return try decodeLedger(id, try Self.rangeResult(results.first, id))
    }

    func decodeLedger(_ id: SessionID, _ records: [KeyValue]) throws(SessionStoreError) -> [LedgerEntry] {
        var entries: [LedgerEntry] = []
        for keyValue in records {
            entries.append(
                try Self.decode(id) { () throws(ConsensusRecordError) in try ConsensusSessionCodec.decodeLedgerEntry(keyValue.value) })
        }
        return entries.sorted { $0.callID < $1.callID }
    }

    // MARK: KV-cache refs

    public func kvCacheRefs(_ id: SessionID, nowMilliseconds: Int64) async throws(SessionStoreError) -> [KVCacheRef] {
        try await unexpiredKVCacheRefs(id, nowMilliseconds: nowMilliseconds).values.sorted { $0.block < $1.block }
    }

    public func kvCacheRef(_ id: SessionID, block: Int64, nowMilliseconds: Int64) async throws(SessionStoreError) -> KVCacheRef {
        guard let ref = try await unexpiredKVCacheRefs(id, nowMilliseconds: nowMilliseconds)[block] else {
            throw SessionStoreError(.entryNotFound, session: id, "session \(id) has no unexpired KV-cache ref for block \(block)")
        }
        return ref
    }

    /// Reads the session's refs record and leaves out the refs expired at `nowMilliseconds`.
    private func unexpiredKVCacheRefs(_ id: SessionID, nowMilliseconds: Int64) async throws(SessionStoreError) -> [Int64: KVCacheRef] {
        let refsKey = keys.kvCacheRefs(id)
        let (_, results) = try await readSession(id, "KV-cache ref read", [.get(refsKey)], cachedRecords: [refsKey])
        guard let bytes = try Self.getResult(results.first, id) else { return [:] }
        let refs = try Self.decode(id) { () throws(ConsensusRecordError) in try ConsensusSessionCodec.decodeKVCacheRefs(bytes) }
        return refs.filter { $0.value.expiresAtMilliseconds > nowMilliseconds }
    }

    // MARK: Session values

    public func value(_ id: SessionID, name: String) async throws(SessionStoreError) -> SessionValue {
        let valueKey = keys.value(id, name: name)
        // A name too long for a key cannot have been stored.
        let fits = valueKey.utf8.count <= LinearizableStoreLimits.maximumKeyBytes
        let (_, results) = try await readSession(id, "value read", fits ? [.get(valueKey)] : [], cachedRecords: [valueKey])
        guard fits, let bytes = try Self.getResult(results.first, id) else {
            throw SessionStoreError(.entryNotFound, session: id, "session \(id) has no value \"\(name)\"")
        }
        return try Self.decode(id) { () throws(ConsensusRecordError) in try ConsensusSessionCodec.decodeValue(bytes) }
    }

    public func values(_ id: SessionID) async throws(SessionStoreError) -> [SessionValue] {
        let (_, results) = try await readSession(id, "value read", [.range(KeyRange(prefix: keys.valuePrefix(id)))])
        return try decodeValues(id, try Self.rangeResult(results.first, id))
    }

    func decodeValues(_ id: SessionID, _ records: [KeyValue]) throws(SessionStoreError) -> [SessionValue] {
        var values: [SessionValue] = []
        for keyValue in records {
            values.append(try Self.decode(id) { () throws(ConsensusRecordError) in try ConsensusSessionCodec.decodeValue(keyValue.value) })
        }
        return values.sorted { $0.name < $1.name }
    }

    // MARK: Replication

    /// Reads the meta record, turns, ledger and values in one transaction.
    public func replicatedState(
        _ id: SessionID
    ) async throws(SessionStoreError) -> (info: SessionInfo, turns: [Turn], ledger: [LedgerEntry], values: [SessionValue]) {
        let (state, results) = try await readSession(
            id, "replicated state read",
            [
                .range(KeyRange(prefix: keys.turnPrefix(id))), .range(KeyRange(prefix: keys.ledgerPrefix(id))),
                .range(KeyRange(prefix: keys.valuePrefix(id))),
            ])
        return (
            state.meta.info(id), try heldTurns(id, meta: state.meta, try Self.rangeResult(results.first, id)),
            try decodeLedger(id, try Self.rangeResult(results.dropFirst().first, id)),
            try decodeValues(id, try Self.rangeResult(results.dropFirst(2).first, id))
        )
    }
}
