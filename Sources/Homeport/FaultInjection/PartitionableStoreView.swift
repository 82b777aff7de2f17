import Synchronization

/// One region's view of the shared linearizable store in the fault-injection
/// harness. While cut off, every call from this region fails with
/// `unavailable` and changes nothing, as a partition between one region and
/// the store would, while the other regions reach it as before.
public final class PartitionableStoreView: LinearizableStore {
    private let base: any LinearizableStore
    private let reachable = Atomic<Bool>(true)

    public init(_ base: any LinearizableStore) {
        self.base = base
    }

    /// Cuts this view off from the store (false) or reconnects it (true).
    public func setReachable(_ isReachable: Bool) {
        reachable.store(isReachable, ordering: .sequentiallyConsistent)
    }

    private func requireReachable() throws(LinearizableStoreError) {
        guard reachable.load(ordering: .sequentiallyConsistent) else {
            throw LinearizableStoreError(.unavailable, "this region is cut off from the linearizable store")
        }
    }

    public func currentRevision() async throws(LinearizableStoreError) -> Int64 {
        try requireReachable()
        return try await base.currentRevision()
    }

    public func get(_ key: String) async throws(LinearizableStoreError) -> KeyValue? {
        try requireReachable()
        return try await base.get(key)
    }

    public func range(prefix: String) async throws(LinearizableStoreError) -> [KeyValue] {
        try requireReachable()
        return try await base.range(prefix: prefix)
    }

    public func put(_ key: String, value: [UInt8], lease: LeaseID?) async throws(LinearizableStoreError) -> Int64 {
        try requireReachable()
        return try await base.put(key, value: value, lease: lease)
    }

    public func delete(_ key: String) async throws(LinearizableStoreError) -> DeleteResult {
        try requireReachable()
        return try await base.delete(key)
    }

    public func transaction(
        compares: [TransactionCompare], success: [TransactionOperation], failure: [TransactionOperation]
    ) async throws(LinearizableStoreError) -> TransactionResult {
        try requireReachable()
        return try await base.transaction(compares: compares, success: success, failure: failure)
    }

    public func grantLease(ttl: Duration) async throws(LinearizableStoreError) -> Lease {
        try requireReachable()
        return try await base.grantLease(ttl: ttl)
    }

    public func keepAlive(_ id: LeaseID) async throws(LinearizableStoreError) -> Duration {
        try requireReachable()
        return try await base.keepAlive(id)
    }

    public func revokeLease(_ id: LeaseID) async throws(LinearizableStoreError) {
        try requireReachable()
        try await base.revokeLease(id)
    }

    public func leaseTimeToLive(_ id: LeaseID) async throws(LinearizableStoreError) -> LeaseStatus {
        try requireReachable()
        return try await base.leaseTimeToLive(id)
    }
}
