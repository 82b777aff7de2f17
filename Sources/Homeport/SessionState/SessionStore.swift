/// Storage for session-local state at one region: conversation buffers,
/// tool-call ledgers, KV-cache refs and session values.
///
/// Contract for every implementation:
/// - Every mutation is stamped with the session's epoch and the next sequence
///   number, atomically with the write.
/// - An append with an idempotency key that the session has seen returns the
///   first result and stores nothing; with a different turn it fails with
///   `idempotencyKeyReused`.
/// - Ledger status only moves forward (see `LedgerStatus`); an older or equal
///   status is a no-op and two different terminal states fail with
///   `ledgerConflict`.
/// - Expired KV-cache refs are never returned.
/// - A write that would pass a size limit fails with `limitExceeded` and
///   stores nothing, unless the kind's overflow policy drops the oldest
///   entries instead.
/// - Operations on the same session are linearizable.
public protocol SessionStore: Sendable {
    func createSession(
        _ id: SessionID, tenant: TenantID, home: String, epoch: UInt64, nowMilliseconds: Int64
    ) async throws(SessionStoreError) -> SessionInfo

    func sessionInfo(_ id: SessionID) async throws(SessionStoreError) -> SessionInfo

    func appendTurn(
        _ id: SessionID, _ draft: TurnDraft, nowMilliseconds: Int64
    ) async throws(SessionStoreError) -> TurnAppendResult

    /// Returns the selected turns in sequence order, and the session's info.
    func readTurns(
        _ id: SessionID, _ selection: TurnSelection
    ) async throws(SessionStoreError) -> (turns: [Turn], session: SessionInfo)

    func writeLedgerEntry(
        _ id: SessionID, _ write: LedgerWrite, nowMilliseconds: Int64
    ) async throws(SessionStoreError) -> LedgerWriteResult

    func ledgerEntry(_ id: SessionID, callID: String) async throws(SessionStoreError) -> LedgerEntry

    /// Returns every ledger entry, ordered by call id.
    func ledgerEntries(_ id: SessionID) async throws(SessionStoreError) -> [LedgerEntry]

    /// Stores or refreshes refs for `blocks`, each expiring `ttlMilliseconds`
    /// from now. Returns the refs as stored.
    func putKVCacheRefs(
        _ id: SessionID, _ refs: [(block: Int64, location: String)], ttlMilliseconds: Int64, nowMilliseconds: Int64
    ) async throws(SessionStoreError) -> [KVCacheRef]

    /// Returns the unexpired refs, ordered by block.
    func kvCacheRefs(_ id: SessionID, nowMilliseconds: Int64) async throws(SessionStoreError) -> [KVCacheRef]

    func kvCacheRef(_ id: SessionID, block: Int64, nowMilliseconds: Int64) async throws(SessionStoreError) -> KVCacheRef

    func putValue(
        _ id: SessionID, name: String, value: JSONValue, nowMilliseconds: Int64
    ) async throws(SessionStoreError) -> SessionValue

    func value(_ id: SessionID, name: String) async throws(SessionStoreError) -> SessionValue

    /// Returns every value, ordered by name.
    func values(_ id: SessionID) async throws(SessionStoreError) -> [SessionValue]

    /// Makes this store the home of a session taken over from a failed region,
    /// at `epoch`, built from its standby copy. Returns the existing session
    /// unchanged if it is here already. `replicationGap` is false only when
    /// the old home has confirmed that the copy has all its writes.
    func adopt(
        _ copy: StandbySession, home: String, epoch: UInt64, replicationGap: Bool
    ) async throws(SessionStoreError) -> SessionInfo

    /// Returns the ids of every session held, sorted.
    func sessionIDs() async throws(SessionStoreError) -> [SessionID]

    /// Returns, for each of `ids` adopted here after a takeover, the old
    /// home's position up to which this store has every write. Sessions not
    /// here are absent.
    func adoptedPositions(_ ids: [SessionID]) async throws(SessionStoreError) -> [SessionID: SessionStamp]

    /// Merges an old home's reconcile tail into the session, which lives here
    /// at `home` after a takeover (see `SessionRecord.merge` for the rules).
    /// A session not here yet is adopted first, from `standby` if given, or
    /// else built from the tail, which must then be complete. Clears the
    /// session's `replicationGap` and returns how many records changed.
    ///
    /// - Throws: `reconcilePositionUnknown` when the tail starts after the
    ///   position held here, `notDurable` when the journal fails.
    func mergeReconcileTail(
        _ tail: ReconcileTail, standby: StandbySession?, home: String
    ) async throws(SessionStoreError) -> Int

    /// Removes every session and empties the durable log: a returning region
    /// calls it once reconcile-forward has shipped its sessions to the region
    /// that took it over, so that it never serves them again.
    func removeAllSessions() async throws(SessionStoreError)

    /// Returns the session's replicated state (everything but KV-cache refs),
    /// read atomically, for a replication snapshot.
    func replicatedState(
        _ id: SessionID
    ) async throws(SessionStoreError) -> (info: SessionInfo, turns: [Turn], ledger: [LedgerEntry], values: [SessionValue])

    /// Releases the store's threads and connections once its node has
    /// stopped; later operations fail with `storeUnavailable`. Stores that
    /// hold none keep the default, which does nothing.
    func shutdown()
}

extension SessionStore {
    public func shutdown() {}
}

/// Size limits of the session store, per session unless named otherwise.
/// Built from the policy table's rows for the four session-local kinds.
public struct SessionStoreLimits: Sendable, Equatable {
    public var maximumSessions: Int = 1_000_000

    public var maximumTurns: Int = 1024
    public var maximumTurnBytes: Int = 1 << 20
    public var maximumBufferBytes: Int = 16 << 20
    /// When true, an append past `maximumTurns` or `maximumBufferBytes` drops
    /// the oldest turns; when false it fails with `limitExceeded`.
    public var dropOldestTurns: Bool = false

    public var maximumLedgerEntries: Int = 256
    /// Bytes of a ledger entry's serialised arguments plus result.
    public var maximumLedgerEntryBytes: Int = 64 << 10

    public var maximumKVCacheRefs: Int = 4096
    public var defaultKVCacheTTLMilliseconds: Int64 = 600_000

    public var maximumValues: Int = 64
    /// Bytes of a serialised session value.
    public var maximumValueBytes: Int = 16 << 10

    public init() {}
}
