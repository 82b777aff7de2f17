/// A session store whose every operation is a linearizable operation of a
/// `LinearizableStore` that all regions share: the "every session behind
/// consensus" design that `homeport bench` compares Homeport's default with.
/// Any region can serve any session, without forwarding and without
/// takeover. It runs on `EmbeddedLinearizableStore` and on etcd
/// (`EtcdLinearizableStore`); the semantics are those of
/// `MemorySessionStore`, and the same contract suite checks both.
///
/// Layout (see `ConsensusSessionKeys` and `ConsensusSessionCodec`): a small
/// meta record per session (info, counters and an index of the turns held),
/// one key per turn, idempotency key, ledger entry and value, and one key
/// for all of a session's KV-cache refs. A write therefore puts the meta
/// record and the records it changes, never the whole buffer, and a turn of
/// `maximumTurnBytes` (1 MiB by default) fits one etcd request.
///
/// Atomicity: every write is one transaction. It compares the meta record's
/// `modRevision` with the revision the decision was made from, checks that
/// each key not read yet is absent, and writes the meta record with the
/// records it changes. A write whose compare fails takes the current state
/// from the transaction's failure branch and decides again, at most 32
/// times, pausing briefly from the third attempt on; then it fails with
/// `storeUnavailable`. No write reads and then writes without such a compare.
///
/// Round trips to the linearizable store, in the common case:
/// - Reads (`sessionInfo`, `readTurns` with any selection, `ledgerEntry`,
///   `ledgerEntries`, `kvCacheRefs`, `kvCacheRef`, `value`, `values`,
///   `replicatedState`): one, a transaction of gets and ranges at one
///   revision. `readTurns(.tail)` takes a second one after a reconcile has
///   put an older epoch's turns among the newer ones (the turn keys then no
///   longer sort in buffer order).
/// - Writes (`appendTurn`, `writeLedgerEntry`, `putKVCacheRefs`, `putValue`):
///   one transaction when this store wrote or read the session last. The
///   store caches each session's last known state (see `KnownSessionState`,
///   bounded by `CacheLimits`); after another region wrote the
///   session, or for a session not in the cache, it takes two. Replays,
///   no-ops and rejected writes take the same single transaction, which
///   checks that the state they were decided from is current.
/// - `createSession`: one transaction, whatever other regions do (the
///   session count is a key's version, see `createSession`).
/// - A replayed append whose turn is not cached takes one more, to read it.
/// - Under drop-oldest, when the forgotten idempotency keys reach a quarter
///   of the keys kept, an append takes two more to delete them.
///
/// Writes of one session from this store wait for each other
/// (`SessionWriteQueue`), so they do not lose compares to each other; writes
/// from other stores (regions) can, which costs a retry.
///
/// Failures: when the linearizable store cannot be reached, an operation
/// throws `storeUnavailable` (503); a write may then have been applied, so
/// retry it with the same idempotency key. A request over the linearizable
/// store's size limits (etcd's `--max-request-bytes`, 1.5 MiB by default)
/// throws `limitExceeded`. A record that is not in this version's format
/// throws `storeUnavailable` naming it.
///
/// etcd keeps every revision of a key until it compacts them, and every write
/// here puts the meta record, so run etcd with `--auto-compaction-mode` and
/// `--auto-compaction-retention` set, or its database grows to its space
/// quota and then rejects writes.
///
/// The journal, when given, receives each mutation this store committed,
/// after the commit and per session in stamp order. It does not see other
/// regions' writes, so give it no session log that must hold every write.
public final class ConsensusSessionStore: SessionStore {
    public let limits: SessionStoreLimits
    let store: any LinearizableStore
    let keys: ConsensusSessionKeys
    let cache: SessionStateCache
    let writeQueue = SessionWriteQueue()
    let journal: SessionJournal?
    let logger: Logger?

    /// The bounds of the cache of sessions' last known states. An evicted
    /// session costs one more round trip on its next write.
    public struct CacheLimits: Sendable, Equatable {
        /// The maximum number of sessions cached.
        public var maximumSessions: Int
        /// The maximum number of bytes cached, as estimated from the records cached.
        public var maximumBytes: Int

        public init(maximumSessions: Int = 100_000, maximumBytes: Int = 64 << 20) {
            self.maximumSessions = maximumSessions
            self.maximumBytes = maximumBytes
        }
    }

    /// The maximum number of attempts of one write before it fails with `storeUnavailable`.
    static let maximumAttempts = 32
    /// The maximum number of operations this store puts in one transaction
    /// branch. etcd rejects a branch of more than `--max-txn-ops` (128 by default).
    static let maximumOperationsPerTransaction = 120

    /// Creates a store over `store`, keeping every key under `keyPrefix`.
    /// Stores of all regions must share the prefix and the limits.
    public init(
        store: any LinearizableStore, limits: SessionStoreLimits, keyPrefix: String = "/homeport/sessions/",
        cacheLimits: CacheLimits = CacheLimits(), journal: SessionJournal? = nil, logger: Logger? = nil
    ) {
        self.store = store
        self.limits = limits
        self.keys = ConsensusSessionKeys(prefix: keyPrefix)
        self.cache = SessionStateCache(limits: cacheLimits)
        self.journal = journal
        self.logger = logger?.with(["component": "consensus-session-store"])
    }

    // MARK: Transactions

    /// Runs one transaction, mapping the linearizable store's errors.
    func transaction(
        _ id: SessionID?, _ operation: String, compares: [TransactionCompare], success: [TransactionOperation],
        failure: [TransactionOperation] = []
    ) async throws(SessionStoreError) -> TransactionResult {
        do {
            return try await store.transaction(compares: compares, success: success, failure: failure)
        } catch {
            throw Self.storeError(error, session: id, operation: operation)
        }
    }

    /// Maps an error of the linearizable store to the session store's codes.
    static func storeError(_ error: LinearizableStoreError, session: SessionID?, operation: String) -> SessionStoreError {
        let subject = session.map { "the \(operation) of session \($0)" } ?? "the \(operation)"
        switch error.code {
        case .valueTooLarge, .keyTooLarge:
            return SessionStoreError(
                .limitExceeded, session: session,
                "\(subject) is over the linearizable store's size limit (\(error.message)); send less, or raise the limit on the store")
        case .invalidArgument:
            return SessionStoreError(
                .invalidWrite, session: session, "the linearizable store rejected \(subject) as invalid (\(error.message))")
        case .unavailable, .unexpectedResponse, .leaseNotFound:
            return SessionStoreError(
                .storeUnavailable, session: session,
                "the linearizable store failed \(subject) (\(error)); retry later. A write may or may not have been applied, so retry it with the same idempotency key"
            )
        }
    }

    static func malformed(_ error: ConsensusRecordError, session: SessionID) -> SessionStoreError {
        SessionStoreError(
            .storeUnavailable, session: session,
            "session \(session) cannot be read because \(error); was the key written by another program or version?")
    }

    static func notFound(_ id: SessionID) -> SessionStoreError {
        SessionStoreError(.sessionNotFound, session: id, "session \(id) does not exist")
    }

    /// Decodes a meta record, or throws `sessionNotFound` when it is absent.
    func decodeState(_ id: SessionID, meta keyValue: KeyValue?) throws(SessionStoreError) -> KnownSessionState {
        guard let keyValue else { throw Self.notFound(id) }
        do throws(ConsensusRecordError) {
            let meta = try ConsensusSessionCodec.decodeMeta(keyValue.value)
            return KnownSessionState(meta: meta, metaRevision: keyValue.modRevision, metaBytes: keyValue.value.count)
        } catch {
            throw Self.malformed(error, session: id)
        }
    }

    /// Reads the session's meta record and `records` in one transaction.
    /// Throws `sessionNotFound` when the session does not exist.
    func readState(_ id: SessionID, records: [String], operation: String) async throws(SessionStoreError) -> KnownSessionState {
        let result = try await transaction(
            id, operation, compares: [], success: [.get(keys.meta(id))] + records.map { .get($0) })
        return try state(id, fromReads: result.results, records: records)
    }

    /// Builds the state from the results of `[get meta] + records.map(get)`.
    func state(
        _ id: SessionID, fromReads results: [TransactionOperationResult], records: [String]
    ) throws(SessionStoreError) -> KnownSessionState {
        guard results.count == records.count + 1 else {
            throw SessionStoreError(
                .storeUnavailable, session: id,
                "the linearizable store returned \(results.count) results for \(records.count + 1) reads; retry later")
        }
        guard case .get(let meta) = results[0] else { throw Self.unexpectedResult(id) }
        var state = try decodeState(id, meta: meta)
        for (key, result) in zip(records, results.dropFirst()) {
            guard case .get(let keyValue) = result else { throw Self.unexpectedResult(id) }
            state.records[key] = .some(keyValue?.value)
        }
        return state
    }

    static func unexpectedResult(_ id: SessionID) -> SessionStoreError {
        SessionStoreError(
            .storeUnavailable, session: id, "the linearizable store returned a result of another kind than the read asked for; retry later")
    }

    // MARK: Writes

    /// A write's decision, made from a session's known state.
    enum Decision<Value: Sendable> {
        /// No write is needed: a replay, a no-op, or a rule the write breaks.
        case unchanged(Result<Value, SessionStoreError>)
        /// The decision needs these keys too: read them and decide again.
        case needs([String])
        /// Write the change and return the value.
        case write(SessionChange, Value)
    }

    /// The records a write puts and deletes, and the meta record after it.
    struct SessionChange {
        var meta: ConsensusSessionMeta
        var puts: [(key: String, value: [UInt8])] = []
        var deletes: [String] = []
        var journalEntry: ReplicationEntry?
    }

    /// Runs a write of one session: decides it with `decide` from the known
    /// state and commits it in one transaction guarded by the meta revision,
    /// deciding again from the current state whenever the guard fails.
    ///
    /// `records` are the keys `decide` reads besides the meta record. A key
    /// the cache does not know is assumed absent, and the transaction checks
    /// that it is. A write that changes nothing still runs the guard, unless
    /// its state was read during this call.
    func mutate<Value: Sendable>(
        _ id: SessionID, _ operation: String, records: [String],
        _ decide: (KnownSessionState) throws(SessionStoreError) -> Decision<Value>
    ) async throws(SessionStoreError) -> Value {
        try await writeQueue.run(id) { () async throws(SessionStoreError) -> Value in
            try await mutateInTurn(id, operation, records: records, decide)
        }
    }

    private func mutateInTurn<Value: Sendable>(
        _ id: SessionID, _ operation: String, records: [String],
        _ decide: (KnownSessionState) throws(SessionStoreError) -> Decision<Value>
    ) async throws(SessionStoreError) -> Value {
        let metaKey = keys.meta(id)
        var needed = records
        var known = cache.state(id)
        // True when `known` was read during this call, so that a decision
        // that writes nothing is linearizable without another check.
        var isFresh = false

        for attempt in 0..<Self.maximumAttempts {
            guard let current = known else {
                let state = try await readState(id, records: needed, operation: operation)
                cache.store(id, state)
                known = state
                isFresh = true
                continue
            }

            var view = current
            let assumedAbsent = needed.filter { current.record($0) == nil }
            for key in assumedAbsent { view.records[key] = .some(nil) }
            let compares: [TransactionCompare] =
                [.modRevision(metaKey, equals: view.metaRevision)] + assumedAbsent.map { .absent($0) }
            let rereads: [TransactionOperation] = [.get(metaKey)] + needed.map { .get($0) }

            let decision: Decision<Value>
            do throws(SessionStoreError) {
                decision = try decide(view)
            } catch {
                decision = .unchanged(.failure(error))
            }

            let result: TransactionResult
            switch decision {
            case .unchanged(let outcome):
                if isFresh && assumedAbsent.isEmpty { return try outcome.get() }
                result = try await transaction(id, operation, compares: compares, success: [], failure: rereads)
                if result.succeeded {
                    cache.store(id, view)
                    return try outcome.get()
                }

            case .needs(let more):
                let added = more.filter { !needed.contains($0) }
                needed += added
                result = try await transaction(
                    id, operation, compares: compares, success: more.map { .get($0) }, failure: [.get(metaKey)] + needed.map { .get($0) })
                if result.succeeded {
                    for (key, read) in zip(more, result.results) {
                        guard case .get(let keyValue) = read else { throw Self.unexpectedResult(id) }
                        view.records[key] = .some(keyValue?.value)
                    }
                    cache.store(id, view)
                    known = view
                    isFresh = true
                    continue
                }

            case .write(var change, let value):
                sweepDroppedTurns(id, &change)
                let encodedMeta = ConsensusSessionCodec.encodeMeta(change.meta)
                let writes: [TransactionOperation] =
                    change.puts.map { .put($0.key, value: $0.value) } + change.deletes.map { .delete($0) }
                    + [.put(metaKey, value: encodedMeta)]
                result = try await transaction(id, operation, compares: compares, success: writes, failure: rereads)
                if result.succeeded {
                    var next = view
                    next.meta = change.meta
                    next.metaRevision = result.revision
                    next.metaBytes = encodedMeta.count
                    for (key, value) in change.puts where needed.contains(key) { next.records[key] = .some(value) }
                    for key in change.deletes where needed.contains(key) { next.records[key] = .some(nil) }
                    cache.store(id, next)
                    if let entry = change.journalEntry { record(entry) }
                    await purgeForgottenIdempotencyKeys(id, next)
                    return value
                }
            }

            // The guard failed: another region wrote the session since
            // `view`. The failure branch read the current state.
            let state = try state(id, fromReads: result.results, records: needed)
            cache.store(id, state)
            known = state
            isFresh = true
            logger?.debug(
                "session changed concurrently, deciding again",
                ["session": id.rawValue, "operation": operation, "attempt": String(attempt + 1)])
            if attempt >= 1 {
                await Self.pauseAfterLostCompare(attempt: attempt)
            }
        }

        throw SessionStoreError(
            .storeUnavailable, session: id,
            "the \(operation) of session \(id) lost to concurrent writes \(Self.maximumAttempts) times; retry later")
    }

    /// Waits a random time that grows with the attempt, up to 32 ms, so that
    /// writers from several regions that keep colliding spread out.
    private static func pauseAfterLostCompare(attempt: Int) async {
        let ceiling = 500 << min(attempt - 1, 6)
        try? await Task.sleep(for: .microseconds(Int.random(in: 0...ceiling)))
    }

    /// Adds deletes of turns dropped earlier whose keys are still there, as
    /// many as the transaction has room for.
    private func sweepDroppedTurns(_ id: SessionID, _ change: inout SessionChange) {
        let room = Self.maximumOperationsPerTransaction - change.puts.count - change.deletes.count - 1
        guard room > 0, !change.meta.droppedTurns.isEmpty else { return }
        let swept = change.meta.droppedTurns.prefix(room)
        change.deletes += swept.map { keys.turn(id, $0) }
        change.meta.droppedTurns.removeFirst(swept.count)
    }

    /// Records a committed mutation. The write is in the linearizable store
    /// already, so a journal whose session log fails cannot undo it: the
    /// failure is logged and the caller still gets the result.
    func record(_ entry: ReplicationEntry, measuresLag: Bool = true) {
        guard let journal else { return }
        do throws(SessionLogError) {
            try journal.record(entry, measuresLag: measuresLag)
        } catch {
            logger?.error(
                "session log failed after a write committed",
                ["session": entry.session.rawValue, "seq": String(entry.seq), "error": error.description])
        }
    }
}
