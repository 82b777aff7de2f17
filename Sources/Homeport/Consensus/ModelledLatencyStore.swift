/// A linearizable store that waits a modelled consensus latency before every
/// call it passes to its base store, so that an in-process store behaves, in
/// latency, like a consensus cluster spread over the regions. Results and
/// errors are the base store's.
public final class ModelledLatencyStore: LinearizableStore {
    public let base: any LinearizableStore
    public let region: String
    public let model: ConsensusLatencyModel
    private let clock: any WallClock

    public init(base: any LinearizableStore, region: String, model: ConsensusLatencyModel, clock: any WallClock) {
        self.base = base
        self.region = region
        self.model = model
        self.clock = clock
    }

    private func wait() async {
        var generator = SystemRandomNumberGenerator()
        // A cancelled caller stops waiting and gets the base store's result.
        try? await clock.sleep(for: model.sampleDelay(from: region, using: &generator))
    }

    public func currentRevision() async throws(LinearizableStoreError) -> Int64 {
        await wait()
        return try await base.currentRevision()
    }

    public func get(_ key: String) async throws(LinearizableStoreError) -> KeyValue? {
        await wait()
        return try await base.get(key)
    }

    public func range(prefix: String) async throws(LinearizableStoreError) -> [KeyValue] {
        await wait()
        return try await base.range(prefix: prefix)
    }

    public func put(_ key: String, value: [UInt8], lease: LeaseID?) async throws(LinearizableStoreError) -> Int64 {
        await wait()
        return try await base.put(key, value: value, lease: lease)
    }

    public func delete(_ key: String) async throws(LinearizableStoreError) -> DeleteResult {
        await wait()
        return try await base.delete(key)
    }

    public func transaction(
        compares: [TransactionCompare], success: [TransactionOperation], failure: [TransactionOperation]
    ) async throws(LinearizableStoreError) -> TransactionResult {
        await wait()
        return try await base.transaction(compares: compares, success: success, failure: failure)
    }

    public func grantLease(ttl: Duration) async throws(LinearizableStoreError) -> Lease {
        await wait()
        return try await base.grantLease(ttl: ttl)
    }

    public func keepAlive(_ id: LeaseID) async throws(LinearizableStoreError) -> Duration {
        await wait()
        return try await base.keepAlive(id)
    }

    public func revokeLease(_ id: LeaseID) async throws(LinearizableStoreError) {
        await wait()
        try await base.revokeLease(id)
    }

    public func leaseTimeToLive(_ id: LeaseID) async throws(LinearizableStoreError) -> LeaseStatus {
        await wait()
        return try await base.leaseTimeToLive(id)
    }
}
