import Synchronization

@testable import Homeport

/// A `LinearizableStore` that passes every call to another store and counts
/// them, so that tests can check how many round trips an operation takes.
/// Each method is one request to a server store.
final class CountingLinearizableStore: LinearizableStore {
    let base: any LinearizableStore
    private let calls = Atomic<Int>(0)

    init(_ base: any LinearizableStore) {
        self.base = base
    }

    /// The number of calls passed on so far.
    var roundTrips: Int { calls.load(ordering: .relaxed) }

    /// Returns the round trips that `body` took.
    func counting<Value>(_ body: () async throws -> Value) async rethrows -> (value: Value, roundTrips: Int) {
        let before = roundTrips
        let value = try await body()
        return (value, roundTrips - before)
    }

    private func count() {
        calls.add(1, ordering: .relaxed)
    }

    func currentRevision() async throws(LinearizableStoreError) -> Int64 {
        count()
        return try await base.currentRevision()
    }

    func get(_ key: String) async throws(LinearizableStoreError) -> KeyValue? {
        count()
        return try await base.get(key)
    }

    func range(prefix: String) async throws(LinearizableStoreError) -> [KeyValue] {
        count()
        return try await base.range(prefix: prefix)
    }

    func put(_ key: String, value: [UInt8], lease: LeaseID?) async throws(LinearizableStoreError) -> Int64 {
        count()
        return try await base.put(key, value: value, lease: lease)
    }

    func delete(_ key: String) async throws(LinearizableStoreError) -> DeleteResult {
        count()
        return try await base.delete(key)
    }

    func transaction(
        compares: [TransactionCompare], success: [TransactionOperation], failure: [TransactionOperation]
    ) async throws(LinearizableStoreError) -> TransactionResult {
        count()
        return try await base.transaction(compares: compares, success: success, failure: failure)
    }

    func grantLease(ttl: Duration) async throws(LinearizableStoreError) -> Lease {
        count()
        return try await base.grantLease(ttl: ttl)
    }

    func keepAlive(_ id: LeaseID) async throws(LinearizableStoreError) -> Duration {
        count()
        return try await base.keepAlive(id)
    }

    func revokeLease(_ id: LeaseID) async throws(LinearizableStoreError) {
        count()
        try await base.revokeLease(id)
    }

    func leaseTimeToLive(_ id: LeaseID) async throws(LinearizableStoreError) -> LeaseStatus {
        count()
        return try await base.leaseTimeToLive(id)
    }
}
