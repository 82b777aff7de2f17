/// All session-local state of one session, with the rules of each data type.
/// A value type with no locking and no I/O: the store that owns it serialises
/// access.
struct SessionRecord: Sendable {
    /// The turn an idempotency key was first used for. It is kept after the
    /// turn is dropped, so that a late retry is still recognised.
    struct IdempotencyRecord: Sendable {
        /// The whole stamp: after a reconcile, recovered turns of an older
        /// epoch share seq numbers with the new epoch's turns.
        var stamp: SessionStamp
        var role: TurnRole
        var tokens: Int
        var contentBytes: Int
        /// Fingerprint of the content and the metadata.
        var contentHash: UInt64
    }

    let id: SessionID
    let tenant: TenantID
    var home: String
    var epoch: UInt64
    var lastSeq: UInt64 = 0
    let createdAtMilliseconds: Int64

    var turns: [Turn] = []
    var bufferBytes = 0
    var idempotencyKeys: [String: IdempotencyRecord] = [:]
    /// Idempotency keys in the order they were first used, for eviction.
    var idempotencyKeyOrder: [String] = []
    var ledger: [String: LedgerEntry] = [:]
    var kvCacheRefs: [Int64: KVCacheRef] = [:]
    var values: [String: SessionValue] = [:]
    /// Set when the session was adopted from a standby copy after a takeover,
    /// and cleared when reconcile-forward has brought the old home's tail.
    var replicationGap = false
    /// For a session adopted after a takeover: the old home's position up to
    /// which this record has every write (the standby copy's, raised by each merged
    /// reconcile tail). Nil for a session created here.
    var adoptedPosition: SessionStamp?

    init(id: SessionID, tenant: TenantID, home: String, epoch: UInt64, createdAtMilliseconds: Int64) {
        self.id = id
        self.tenant = tenant
        self.home = home
        self.epoch = epoch
        self.createdAtMilliseconds = createdAtMilliseconds
    }

    /// Rebuilds a session from a copy made of its replicated entries (a
    /// standby copy, or the log replayed after a restart). KV-cache refs are
    /// not in the copy, and idempotency keys are remembered for the turns the
    /// copy still holds.
    init(restoring copy: StandbySession, limits: SessionStoreLimits) {
        self.init(
            id: copy.id, tenant: copy.tenant, home: copy.home, epoch: copy.epoch, createdAtMilliseconds: copy.createdAtMilliseconds)
        lastSeq = copy.appliedSeq
        turns = copy.turns
        bufferBytes = copy.turns.reduce(0) { $0 + $1.content.utf8.count }
        ledger = copy.ledger
        values = copy.values
        for turn in copy.turns {
            guard let key = turn.idempotencyKey else { continue }
            let record = IdempotencyRecord(
                stamp: turn.stamp, role: turn.role, tokens: turn.tokens, contentBytes: turn.content.utf8.count,
                contentHash: Self.contentHash(turn.content) ^ Self.metadataHash(turn.metadata))
            rememberIdempotencyKey(key, record, limits: limits)
        }
    }

    /// The journal entry of a mutation of this session.
    func entry(_ stamp: SessionStamp, _ payload: ReplicationEntry.Payload) -> ReplicationEntry {
        ReplicationEntry(session: id, tenant: tenant, home: home, stamp: stamp, payload: payload)
    }

    /// A snapshot entry of the whole replicated state at the last stamp, for
    /// the journal after an adoption or a reconcile.
    var snapshotEntry: ReplicationEntry {
        .snapshot(
            info, turns: turns, ledger: ledger.values.sorted { $0.callID < $1.callID },
            values: values.values.sorted { $0.name < $1.name })
    }

    var info: SessionInfo {
        SessionInfo(
            id: id, tenant: tenant, home: home, epoch: epoch,
            lastStamp: SessionStamp(epoch: epoch, seq: lastSeq),
            turnCount: turns.count, bufferBytes: bufferBytes, createdAtMilliseconds: createdAtMilliseconds,
            replicationGap: replicationGap)
    }

    private mutating func nextStamp() -> SessionStamp {
        lastSeq += 1
        return SessionStamp(epoch: epoch, seq: lastSeq)
    }

    // MARK: Conversation buffer

    mutating func appendTurn(
        _ draft: TurnDraft, limits: SessionStoreLimits, nowMilliseconds: Int64
    ) throws(SessionStoreError) -> TurnAppendResult {
        let contentBytes = draft.content.utf8.count
        let fingerprint = IdempotencyRecord(
            stamp: SessionStamp(epoch: 0, seq: 0), role: draft.role, tokens: draft.tokens, contentBytes: contentBytes,
            contentHash: Self.contentHash(draft.content) ^ Self.metadataHash(draft.metadata))

        // A retry returns the turn that the key first stored.
        if let key = draft.idempotencyKey, let first = idempotencyKeys[key] {
            guard first.role == fingerprint.role, first.tokens == fingerprint.tokens,
                first.contentBytes == fingerprint.contentBytes, first.contentHash == fingerprint.contentHash
            else {
                throw SessionStoreError(
                    .idempotencyKeyReused, session: id,
                    "idempotency key \"\(key)\" was first used for a different turn (\(first.stamp)); use a new key for a new turn")
            }
            guard let turn = turns.first(where: { $0.stamp == first.stamp }) else {
                throw SessionStoreError(
                    .limitExceeded, session: id,
                    "the turn first stored with idempotency key \"\(key)\" (\(first.stamp)) was dropped by the buffer's drop-oldest limit"
                )
            }
            return TurnAppendResult(turn: turn, replayed: true)
        }

        guard contentBytes <= limits.maximumTurnBytes else {
            throw SessionStoreError(
                .limitExceeded, session: id,
                "the turn's content is \(contentBytes) bytes; the maximum per turn is \(limits.maximumTurnBytes)")
        }
        try makeRoomForTurn(contentBytes: contentBytes, limits: limits)

        let turn = Turn(
            stamp: nextStamp(), role: draft.role, content: draft.content, tokens: draft.tokens,
            createdAtMilliseconds: nowMilliseconds, metadata: draft.metadata, idempotencyKey: draft.idempotencyKey)
        turns.append(turn)
        bufferBytes += contentBytes

        if let key = draft.idempotencyKey {
            var record = fingerprint
            record.stamp = turn.stamp
            rememberIdempotencyKey(key, record, limits: limits)
        }
        return TurnAppendResult(turn: turn, replayed: false)
    }

    private mutating func makeRoomForTurn(contentBytes: Int, limits: SessionStoreLimits) throws(SessionStoreError) {
        let dropCount = try limits.turnsToDrop(
            session: id, turnCount: turns.count, bufferBytes: bufferBytes, contentBytes: contentBytes,
            bytesOfTurn: { turns[$0].content.utf8.count })
        guard dropCount > 0 else { return }
        let droppedBytes = turns[..<dropCount].reduce(0) { $0 + $1.content.utf8.count }
        turns.removeFirst(dropCount)
        bufferBytes -= droppedBytes
    }

    /// Keeps idempotency keys for up to four times the turn limit, evicting the
    /// oldest first, so that memory stays bounded under drop-oldest.
    private mutating func rememberIdempotencyKey(_ key: String, _ record: IdempotencyRecord, limits: SessionStoreLimits) {
        idempotencyKeys[key] = record
        idempotencyKeyOrder.append(key)
        let capacity = max(limits.maximumTurns * 4, 16)
        if idempotencyKeyOrder.count > capacity {
            let evicted = idempotencyKeyOrder.count - capacity
            for oldKey in idempotencyKeyOrder.prefix(evicted) {
                idempotencyKeys[oldKey] = nil
            }
            idempotencyKeyOrder.removeFirst(evicted)
        }
    }

    /// Computes a 64-bit fingerprint of the content for telling a retry from a
    /// different turn. Unlike `Hasher` it is the same in every process. It
    /// mixes eight bytes at a time because contents run to hundreds of kilobytes.
    static func contentHash(_ content: String) -> UInt64 {
        var copy = content
        return copy.withUTF8 { buffer -> UInt64 in
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325 ^ UInt64(buffer.count)
            let raw = UnsafeRawBufferPointer(buffer)
            var offset = 0
            while offset + 8 <= raw.count {
                hash = mix(hash ^ raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
                offset += 8
            }
            var tail: UInt64 = 0
            for index in offset..<raw.count {
                tail |= UInt64(raw[index]) << (8 * UInt64(index - offset))
            }
            return mix(hash ^ tail)
        }
    }

    /// Computes an order-independent fingerprint of turn metadata.
    static func metadataHash(_ metadata: [String: String]) -> UInt64 {
        var hash: UInt64 = 0
        for (key, value) in metadata {
            hash = hash &+ mix(contentHash(key) ^ (contentHash(value) &* 0x9E37_79B9_7F4A_7C15))
        }
        return hash
    }

    /// Applies the SplitMix64 finaliser, so every input bit affects every output bit.
    private static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    func turns(_ selection: TurnSelection) -> [Turn] {
        switch selection {
        case .all:
            return turns
        case .tail(let count):
            return Array(turns.suffix(count))
        case .since(let seq):
            // A scan, not a binary search: recovered turns of an older epoch
            // may carry a higher seq than the new epoch's turns after them.
            return turns.filter { $0.stamp.seq > seq }
        }
    }

    // MARK: Reconcile forward

    /// Merges the old home's reconcile tail into this session, which now
    /// lives here at a later epoch, and returns how many records changed.
    ///
    /// The rules of the design's reconcile-forward:
    /// - A turn this session lacks is inserted in stamp order, so before the
    ///   new epoch's turns, and marked `recovered`. A turn whose idempotency
    ///   key this session has seen is the same turn retried here, and is skipped.
    /// - A ledger entry joins along the status order. Two different terminal
    ///   states keep this session's status and record the other in
    ///   `conflictingStatus`.
    /// - A value is taken when its stamp is higher than the one held.
    ///
    /// Recovered records are acknowledged writes, so they are kept even past
    /// the size limits. Merging the same tail again changes nothing. A merge
    /// that changed something takes the next stamp, so the journal's snapshot
    /// of it reaches this region's own standby.
    mutating func merge(_ tail: ReconcileTail, limits: SessionStoreLimits) -> Int {
        var changed = 0

        let held = Set(turns.map(\.stamp))
        var recovered: [Turn] = []
        for turn in tail.turns where !held.contains(turn.stamp) {
            if let key = turn.idempotencyKey, idempotencyKeys[key] != nil { continue }
            var copy = turn
            copy.recovered = true
            recovered.append(copy)
        }
        if !recovered.isEmpty {
            turns = (turns + recovered).sorted { $0.stamp < $1.stamp }
            bufferBytes += recovered.reduce(0) { $0 + $1.content.utf8.count }
            for turn in recovered {
                guard let key = turn.idempotencyKey else { continue }
                let record = IdempotencyRecord(
                    stamp: turn.stamp, role: turn.role, tokens: turn.tokens, contentBytes: turn.content.utf8.count,
                    contentHash: Self.contentHash(turn.content) ^ Self.metadataHash(turn.metadata))
                rememberIdempotencyKey(key, record, limits: limits)
            }
            changed += recovered.count
        }

        for entry in tail.ledger {
            guard var current = ledger[entry.callID] else {
                ledger[entry.callID] = entry
                changed += 1
                continue
            }
            if current.status.isTerminal, entry.status.isTerminal, current.status != entry.status {
                guard current.conflictingStatus == nil else { continue }
                current.conflictingStatus = entry.status
            } else if entry.status.rank > current.status.rank {
                current.status = entry.status
                if let result = entry.result { current.result = result }
                current.updatedAtMilliseconds = max(current.updatedAtMilliseconds, entry.updatedAtMilliseconds)
            } else {
                continue
            }
            if current.arguments == .null { current.arguments = entry.arguments }
            ledger[entry.callID] = current
            changed += 1
        }

        for value in tail.values where (values[value.name]?.stamp).map({ value.stamp > $0 }) ?? true {
            values[value.name] = value
            changed += 1
        }

        replicationGap = false
        adoptedPosition = max(adoptedPosition ?? tail.lastStamp, tail.lastStamp)
        if changed > 0 { _ = nextStamp() }
        return changed
    }

    // MARK: Tool-call ledger

    mutating func writeLedgerEntry(
        _ write: LedgerWrite, limits: SessionStoreLimits, nowMilliseconds: Int64
    ) throws(SessionStoreError) -> LedgerWriteResult {
        // The limit is on the entry as stored: its arguments (kept from the
        // first write that carried them) plus its result (the latest one).
        let existing = ledger[write.callID]
        let arguments = existing.flatMap { $0.arguments == .null ? nil : $0.arguments } ?? write.arguments
        let result = write.result ?? existing?.result
        let payloadBytes = (arguments?.serializedBytes().count ?? 0) + (result?.serializedBytes().count ?? 0)
        guard payloadBytes <= limits.maximumLedgerEntryBytes else {
            throw SessionStoreError(
                .limitExceeded, session: id,
                "ledger entry \"\(write.callID)\" would hold \(payloadBytes) bytes of arguments and result; the maximum is \(limits.maximumLedgerEntryBytes)"
            )
        }

        guard var entry = ledger[write.callID] else {
            return try createLedgerEntry(write, limits: limits, nowMilliseconds: nowMilliseconds)
        }

        if let name = write.name, name != entry.name {
            throw SessionStoreError(
                .ledgerConflict, session: id,
                "ledger entry \"\(write.callID)\" is a call of \"\(entry.name)\", not \"\(name)\"")
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
            return LedgerWriteResult(entry: entry, applied: false)
        }

        entry.status = write.status
        if let result = write.result { entry.result = result }
        if entry.arguments == .null, let arguments = write.arguments { entry.arguments = arguments }
        entry.stamp = nextStamp()
        entry.updatedAtMilliseconds = nowMilliseconds
        ledger[write.callID] = entry
        return LedgerWriteResult(entry: entry, applied: true)
    }

    private mutating func createLedgerEntry(
        _ write: LedgerWrite, limits: SessionStoreLimits, nowMilliseconds: Int64
    ) throws(SessionStoreError) -> LedgerWriteResult {
        guard let name = write.name else {
            throw SessionStoreError(
                .invalidWrite, session: id,
                "ledger entry \"\(write.callID)\" is new, so the write must carry the tool's \"name\"")
        }
        guard ledger.count < limits.maximumLedgerEntries else {
            throw SessionStoreError(
                .limitExceeded, session: id,
                "session \(id) holds \(ledger.count) ledger entries, the maximum")
        }
        let entry = LedgerEntry(
            callID: write.callID, name: name, arguments: write.arguments ?? .null, status: write.status,
            result: write.result, stamp: nextStamp(), updatedAtMilliseconds: nowMilliseconds)
        ledger[write.callID] = entry
        return LedgerWriteResult(entry: entry, applied: true)
    }

    // MARK: KV-cache refs

    mutating func purgeExpiredKVCacheRefs(nowMilliseconds: Int64) {
        kvCacheRefs = kvCacheRefs.filter { $0.value.expiresAtMilliseconds > nowMilliseconds }
    }

    mutating func putKVCacheRefs(
        _ refs: [(block: Int64, location: String)], ttlMilliseconds: Int64, limits: SessionStoreLimits,
        nowMilliseconds: Int64
    ) throws(SessionStoreError) -> [KVCacheRef] {
        purgeExpiredKVCacheRefs(nowMilliseconds: nowMilliseconds)
        guard !refs.isEmpty else { return [] }
        let newBlocks = Set(refs.map(\.block)).filter { kvCacheRefs[$0] == nil }
        guard kvCacheRefs.count + newBlocks.count <= limits.maximumKVCacheRefs else {
            throw SessionStoreError(
                .limitExceeded, session: id,
                "session \(id) holds \(kvCacheRefs.count) KV-cache refs; adding \(newBlocks.count) would pass the maximum of \(limits.maximumKVCacheRefs)"
            )
        }

        let stamp = nextStamp()
        var stored: [KVCacheRef] = []
        stored.reserveCapacity(refs.count)
        for (block, location) in refs {
            let ref = KVCacheRef(
                block: block, location: location, stamp: stamp, expiresAtMilliseconds: nowMilliseconds + ttlMilliseconds)
            kvCacheRefs[block] = ref
            stored.append(ref)
        }
        return stored
    }

    // MARK: Session values

    mutating func putValue(
        name: String, value: JSONValue, limits: SessionStoreLimits, nowMilliseconds: Int64
    ) throws(SessionStoreError) -> SessionValue {
        let bytes = value.serializedBytes().count
        guard bytes <= limits.maximumValueBytes else {
            throw SessionStoreError(
                .limitExceeded, session: id,
                "value \"\(name)\" is \(bytes) bytes serialised; the maximum is \(limits.maximumValueBytes)")
        }
        guard values[name] != nil || values.count < limits.maximumValues else {
            throw SessionStoreError(
                .limitExceeded, session: id, "session \(id) holds \(values.count) values, the maximum")
        }
        let stored = SessionValue(name: name, value: value, stamp: nextStamp(), updatedAtMilliseconds: nowMilliseconds)
        values[name] = stored
        return stored
    }
}
