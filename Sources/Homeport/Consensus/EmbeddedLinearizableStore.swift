import Synchronization

/// The embedded linearizable store: every key and lease in process memory,
/// behind one mutex.
///
/// Each operation runs entirely under the mutex and neither suspends nor does
/// I/O there, so operations are linearizable in the order they take the lock.
///
/// Time comes from the injected `WallClock`, read under the mutex. The store
/// never lets its time go backwards, so a wall clock stepped back does not
/// revive or extend a lease. Leases expire lazily: every operation first
/// reaps each lease whose deadline has passed, in deadline order, deleting
/// its keys in one revision per lease. No read or write therefore sees a key
/// of an expired lease, and revisions come out as if a reaper had run at each
/// deadline. `reapExpiredLeases()` does the same without another operation.
///
/// Nothing survives the process: a crash loses every key and lease.
public final class EmbeddedLinearizableStore: LinearizableStore {
    /// Every key, lease and revision, and the availability switch.
    private let state: Mutex<State>
    private let clock: any WallClock
    private let logger: Logger?

    /// Creates an empty store at revision 1. `logger`, when given, receives
    /// lease expirations and availability changes.
    public init(clock: any WallClock = SystemClock(), logger: Logger? = nil) {
        self.clock = clock
        self.logger = logger
        self.state = Mutex(State(nowMilliseconds: clock.nowMilliseconds()))
    }

    /// Simulates a network partition between the caller and the store, for
    /// fault tests.
    ///
    /// While unavailable, every `LinearizableStore` method throws
    /// `unavailable` and changes nothing. The store's own time keeps running,
    /// so leases that were not kept alive are expired when the store becomes
    /// available again, as they would be on a server that the caller could
    /// not reach. `reapExpiredLeases()` ignores the switch.
    public func setAvailable(_ available: Bool) {
        let changed = state.withLock { state in
            defer { state.isAvailable = available }
            return state.isAvailable != available
        }

        if changed {
            logger?.warning(available ? "linearizable store available again" : "linearizable store set unavailable")
        }
    }

    /// False while `setAvailable(false)` is in force.
    public var isAvailable: Bool {
        state.withLock { $0.isAvailable }
    }

    /// Expires every lease whose deadline has passed, deleting its keys, and
    /// returns the expired leases' ids in deadline order. Runs even while the
    /// store is unavailable.
    @discardableResult
    public func reapExpiredLeases() -> [LeaseID] {
        let expired = state.withLock { state in
            state.advanceTime(to: clock.nowMilliseconds())
            return state.reapExpiredLeases()
        }

        logExpired(expired)
        return expired.map(\.id)
    }

    public func currentRevision() throws(LinearizableStoreError) -> Int64 {
        try withAvailableState { state in state.revision }
    }

    public func get(_ key: String) throws(LinearizableStoreError) -> KeyValue? {
        try LinearizableStoreLimits.validateKey(key)

        return try withAvailableState { state in state.entries[Array(key.utf8)] }
    }

    public func range(prefix: String) throws(LinearizableStoreError) -> [KeyValue] {
        try LinearizableStoreLimits.validatePrefix(prefix)

        return try withAvailableState { state in state.range(prefix: Array(prefix.utf8)) }
    }

    public func put(_ key: String, value: [UInt8], lease: LeaseID?) throws(LinearizableStoreError) -> Int64 {
        let result = try transaction(compares: [], success: [.put(key, value: value, lease: lease)], failure: [])
        return result.revision
    }

    public func delete(_ key: String) throws(LinearizableStoreError) -> DeleteResult {
        let result = try transaction(compares: [], success: [.delete(key)], failure: [])

        var previous: KeyValue?
        if case .delete(let deleted)? = result.results.first {
            previous = deleted
        }
        return DeleteResult(previous: previous, revision: result.revision)
    }

    public func transaction(
        compares: [TransactionCompare], success: [TransactionOperation], failure: [TransactionOperation]
    ) throws(LinearizableStoreError) -> TransactionResult {
        try LinearizableStoreLimits.validateTransaction(compares: compares, success: success, failure: failure)

        return try withAvailableState { state throws(LinearizableStoreError) in
            try state.applyTransaction(compares: compares, success: success, failure: failure)
        }
    }

    public func grantLease(ttl: Duration) throws(LinearizableStoreError) -> Lease {
        try LinearizableStoreLimits.validateTTL(ttl)
        let ttlMilliseconds = Self.roundedUpMilliseconds(ttl)

        return try withAvailableState { state in
            state.lastLeaseID += 1
            let id = LeaseID(rawValue: state.lastLeaseID)
            state.leases[id] = LeaseRecord(
                id: id, ttlMilliseconds: ttlMilliseconds, expiresAtMilliseconds: state.nowMilliseconds + ttlMilliseconds)
            return Lease(id: id, ttl: .milliseconds(ttlMilliseconds))
        }
    }

    public func keepAlive(_ id: LeaseID) throws(LinearizableStoreError) -> Duration {
        try withAvailableState { state throws(LinearizableStoreError) in
            var lease = try state.requireLease(id)
            lease.expiresAtMilliseconds = state.nowMilliseconds + lease.ttlMilliseconds
            state.leases[id] = lease
            return .milliseconds(lease.ttlMilliseconds)
        }
    }

    public func revokeLease(_ id: LeaseID) throws(LinearizableStoreError) {
        try withAvailableState { state throws(LinearizableStoreError) in
            _ = try state.requireLease(id)
            state.removeLease(id)
        }
    }

    public func leaseTimeToLive(_ id: LeaseID) throws(LinearizableStoreError) -> LeaseStatus {
        try withAvailableState { state throws(LinearizableStoreError) in
            let lease = try state.requireLease(id)
            let keys = lease.keys.sorted { $0.lexicographicallyPrecedes($1) }.compactMap { state.entries[$0]?.key }
            return LeaseStatus(
                id: id,
                grantedTTL: .milliseconds(lease.ttlMilliseconds),
                remainingTTL: .milliseconds(lease.expiresAtMilliseconds - state.nowMilliseconds),
                keys: keys
            )
        }
    }

    /// Runs `body` under the mutex after checking availability, moving the
    /// store's time forward and reaping expired leases. Logs the expirations
    /// after the mutex is released.
    private func withAvailableState<Value: Sendable>(
        _ body: (inout State) throws(LinearizableStoreError) -> Value
    ) throws(LinearizableStoreError) -> Value {
        let (outcome, expired) = state.withLock { state -> (Result<Value, LinearizableStoreError>, [ExpiredLease]) in
            guard state.isAvailable else {
                let error = LinearizableStoreError(
                    .unavailable,
                    "the embedded linearizable store is unavailable because setAvailable(false) is in force. Call setAvailable(true) to end the simulated partition."
                )
                return (.failure(error), [])
            }

            state.advanceTime(to: clock.nowMilliseconds())
            let expired = state.reapExpiredLeases()

            do throws(LinearizableStoreError) {
                return (.success(try body(&state)), expired)
            } catch {
                return (.failure(error), expired)
            }
        }

        logExpired(expired)
        return try outcome.get()
    }

    private func logExpired(_ expired: [ExpiredLease]) {
        guard let logger else { return }
        for lease in expired {
            logger.info(
                "lease expired", ["lease": lease.id.description, "keys": String(lease.deletedKeys), "revision": String(lease.revision)])
        }
    }

    /// Converts the TTL to whole milliseconds, rounding up so that a lease
    /// never lives shorter than requested.
    private static func roundedUpMilliseconds(_ ttl: Duration) -> Int64 {
        let (seconds, attoseconds) = ttl.components
        let attosecondsPerMillisecond: Int64 = 1_000_000_000_000_000
        let milliseconds = seconds * 1000 + attoseconds / attosecondsPerMillisecond
        return attoseconds % attosecondsPerMillisecond == 0 ? milliseconds : milliseconds + 1
    }
}

/// A live lease.
private struct LeaseRecord {
    let id: LeaseID
    let ttlMilliseconds: Int64
    /// The store time at which the lease expires. The lease is live while the
    /// store's time is earlier.
    var expiresAtMilliseconds: Int64
    /// The UTF-8 bytes of every key attached to the lease.
    var keys: Set<[UInt8]> = []
}

/// A lease removed by expiry, for the log.
private struct ExpiredLease: Sendable {
    let id: LeaseID
    let deletedKeys: Int
    /// The store's revision after the lease's keys were deleted.
    let revision: Int64
}

/// The whole store. Its methods assume the caller holds the mutex and has
/// validated keys, values and TTLs.
private struct State {
    var revision: Int64 = 1
    /// The store's time: the highest clock reading seen, in milliseconds since the Unix epoch.
    var nowMilliseconds: Int64
    /// Every key, by its UTF-8 bytes.
    var entries: [[UInt8]: KeyValue] = [:]
    /// The keys of `entries`, ordered by bytes, for range reads.
    var sortedKeys: [[UInt8]] = []
    var leases: [LeaseID: LeaseRecord] = [:]
    var lastLeaseID: Int64 = 0
    var isAvailable = true

    mutating func advanceTime(to clockMilliseconds: Int64) {
        nowMilliseconds = max(nowMilliseconds, clockMilliseconds)
    }

    /// Removes every lease whose deadline is not after now, earliest deadline
    /// first (ties by id), each with its keys in its own revision.
    mutating func reapExpiredLeases() -> [ExpiredLease] {
        let now = nowMilliseconds
        let due = leases.values
            .filter { $0.expiresAtMilliseconds <= now }
            .sorted { ($0.expiresAtMilliseconds, $0.id.rawValue) < ($1.expiresAtMilliseconds, $1.id.rawValue) }

        var expired: [ExpiredLease] = []
        for lease in due {
            let deletedKeys = removeLease(lease.id)
            expired.append(ExpiredLease(id: lease.id, deletedKeys: deletedKeys, revision: revision))
        }
        return expired
    }

    func requireLease(_ id: LeaseID) throws(LinearizableStoreError) -> LeaseRecord {
        guard let lease = leases[id] else {
            throw LinearizableStoreError(
                .leaseNotFound, "lease \(id) not found because it expired, was revoked or was never granted. Grant a new lease.")
        }
        return lease
    }

    /// Removes the lease and deletes its keys in one new revision, or in no
    /// revision when it has no keys. Returns the number of keys deleted.
    @discardableResult
    mutating func removeLease(_ id: LeaseID) -> Int {
        guard let lease = leases.removeValue(forKey: id) else { return 0 }

        let deleteRevision = revision + 1
        var deletedKeys = 0
        for key in lease.keys where removeEntry(key) != nil {
            deletedKeys += 1
        }

        if deletedKeys > 0 {
            revision = deleteRevision
        }
        return deletedKeys
    }

    /// Returns the keys that start with `prefix`, in byte order.
    func range(prefix: [UInt8]) -> [KeyValue] {
        var result: [KeyValue] = []
        var index = insertionIndex(of: prefix)
        while index < sortedKeys.count, sortedKeys[index].starts(with: prefix) {
            if let keyValue = entries[sortedKeys[index]] {
                result.append(keyValue)
            }
            index += 1
        }
        return result
    }

    /// Returns the keys of `range` in the order it asks for.
    func range(_ range: KeyRange) -> [KeyValue] {
        let prefix = Array(range.prefix.utf8)
        let first = insertionIndex(of: range.start.map { Array($0.utf8) } ?? prefix)
        // The end of the prefix is the first key after it; a prefix of only
        // 0xFF bytes (or none) runs to the last key.
        let afterPrefix = EtcdGatewayJSON.rangeEnd(ofPrefix: prefix)
        let end = prefix.isEmpty || afterPrefix == [0] ? sortedKeys.count : insertionIndex(of: afterPrefix)
        let limit = range.limit ?? Int.max

        var result: [KeyValue] = []
        if range.descending {
            var index = end - 1
            while index >= first, result.count < limit {
                if let keyValue = entries[sortedKeys[index]] { result.append(keyValue) }
                index -= 1
            }
        } else {
            var index = first
            while index < end, result.count < limit {
                if let keyValue = entries[sortedKeys[index]] { result.append(keyValue) }
                index += 1
            }
        }
        return result
    }

    func holds(_ compare: TransactionCompare) -> Bool {
        let current = entries[Array(compare.key.utf8)]

        switch compare {
        case .exists:
            return current != nil
        case .absent:
            return current == nil
        case .modRevision(_, let expected):
            return (current?.modRevision ?? 0) == expected
        case .value(_, let expected):
            // An absent key has no value to compare, not even an empty one.
            guard let current else { return false }
            return current.value == expected
        case .version(_, let expected):
            return (current?.version ?? 0) == expected
        case .versionLess(_, let bound):
            return (current?.version ?? 0) < bound
        }
    }

    /// Evaluates the compares and applies one branch in at most one new
    /// revision. Every check that can fail runs before the first write, so a
    /// thrown error leaves the store unchanged.
    mutating func applyTransaction(
        compares: [TransactionCompare], success: [TransactionOperation], failure: [TransactionOperation]
    ) throws(LinearizableStoreError) -> TransactionResult {
        let succeeded = compares.allSatisfy { holds($0) }
        let branch = succeeded ? success : failure

        for case .put(_, _, let lease?) in branch {
            _ = try requireLease(lease)
        }

        let writeRevision = revision + 1
        var changed = false
        var results: [TransactionOperationResult] = []
        for operation in branch {
            switch operation {
            case .put(let key, let value, let lease):
                writeEntry(key, value: value, lease: lease, revision: writeRevision)
                changed = true
                results.append(.put(revision: writeRevision))

            case .delete(let key):
                let previous = removeEntry(Array(key.utf8))
                changed = changed || previous != nil
                results.append(.delete(previous: previous))

            case .get(let key):
                results.append(.get(entries[Array(key.utf8)]))

            case .range(let range):
                results.append(.range(self.range(range)))
            }
        }

        if changed {
            revision = writeRevision
        }
        return TransactionResult(succeeded: succeeded, revision: revision, results: results)
    }

    /// Creates or overwrites the key at `revision` and moves it to `lease`,
    /// which must exist.
    private mutating func writeEntry(_ key: String, value: [UInt8], lease: LeaseID?, revision: Int64) {
        let keyBytes = Array(key.utf8)

        var keyValue: KeyValue
        if let existing = entries[keyBytes] {
            keyValue = existing
            keyValue.value = value
            keyValue.modRevision = revision
            keyValue.version += 1
            if let oldLease = existing.lease, oldLease != lease {
                leases[oldLease]?.keys.remove(keyBytes)
            }
        } else {
            keyValue = KeyValue(key: key, value: value, createRevision: revision, modRevision: revision, version: 1, lease: nil)
            sortedKeys.insert(keyBytes, at: insertionIndex(of: keyBytes))
        }

        keyValue.lease = lease
        if let lease {
            leases[lease]?.keys.insert(keyBytes)
        }
        entries[keyBytes] = keyValue
    }

    /// Deletes the key and detaches it from its lease. Returns the key as it
    /// was, or nil when it was absent.
    private mutating func removeEntry(_ keyBytes: [UInt8]) -> KeyValue? {
        guard let removed = entries.removeValue(forKey: keyBytes) else { return nil }

        sortedKeys.remove(at: insertionIndex(of: keyBytes))
        if let lease = removed.lease {
            leases[lease]?.keys.remove(keyBytes)
        }
        return removed
    }

    /// Returns the index of the first key in `sortedKeys` that is not before
    /// `key`, found by binary search.
    private func insertionIndex(of key: [UInt8]) -> Int {
        var low = 0
        var high = sortedKeys.count
        while low < high {
            let middle = (low + high) / 2
            if sortedKeys[middle].lexicographicallyPrecedes(key) {
                low = middle + 1
            } else {
                high = middle
            }
        }
        return low
    }
}
