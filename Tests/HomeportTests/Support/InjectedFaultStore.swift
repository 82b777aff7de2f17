import Synchronization

@testable import Homeport

/// A `LinearizableStore` in front of another whose next write transactions
/// fail in ways a network can make them fail, for the billing tests.
///
/// Each injected fault applies to one transaction whose success branch writes
/// (a read-only transaction passes through), in the order injected. Every
/// other call passes through unchanged.
final class InjectedFaultStore: LinearizableStore {
    enum Fault: Sendable {
        /// The store applies the transaction, and the response is lost: the caller gets `unavailable`.
        case loseAnswer
        /// The request never reaches the store: the caller gets `unavailable` and nothing is applied.
        case dropRequest
        /// The network delivers the request twice. The caller gets the response
        /// to the second delivery when `responseOfSecond` is true, else to the first.
        case deliverTwice(responseOfSecond: Bool)
    }

    private let base: any LinearizableStore
    private let faults = Mutex<[Fault]>([])
    /// Write transactions that reached the base store, deliveries counted one by one.
    private let deliveredWrites = Atomic<Int>(0)

    init(_ base: any LinearizableStore) {
        self.base = base
    }

    func inject(_ fault: Fault) {
        faults.withLock { $0.append(fault) }
    }

    /// The faults injected and not yet used.
    var pendingFaultCount: Int {
        faults.withLock { $0.count }
    }

    var deliveredWriteCount: Int {
        deliveredWrites.load(ordering: .relaxed)
    }

    func transaction(
        compares: [TransactionCompare], success: [TransactionOperation], failure: [TransactionOperation]
    ) async throws(LinearizableStoreError) -> TransactionResult {
        let writes = success.contains { operation in
            switch operation {
            case .put, .delete: true
            case .get, .range: false
            }
        }
        guard writes else { return try await base.transaction(compares: compares, success: success, failure: failure) }

        let fault = faults.withLock { faults in faults.isEmpty ? nil : faults.removeFirst() }
        switch fault {
        case nil:
            return try await deliver(compares: compares, success: success, failure: failure)
        case .loseAnswer:
            _ = try await deliver(compares: compares, success: success, failure: failure)
            throw LinearizableStoreError(.unavailable, "injected fault: the store applied the transaction and its response was lost")
        case .dropRequest:
            throw LinearizableStoreError(.unavailable, "injected fault: the transaction never reached the store")
        case .deliverTwice(let responseOfSecond):
            let first = try await deliver(compares: compares, success: success, failure: failure)
            let second = try await deliver(compares: compares, success: success, failure: failure)
            return responseOfSecond ? second : first
        }
    }

    private func deliver(
        compares: [TransactionCompare], success: [TransactionOperation], failure: [TransactionOperation]
    ) async throws(LinearizableStoreError) -> TransactionResult {
        deliveredWrites.add(1, ordering: .relaxed)
        return try await base.transaction(compares: compares, success: success, failure: failure)
    }

    func currentRevision() async throws(LinearizableStoreError) -> Int64 {
        try await base.currentRevision()
    }

    func get(_ key: String) async throws(LinearizableStoreError) -> KeyValue? {
        try await base.get(key)
    }

    func range(prefix: String) async throws(LinearizableStoreError) -> [KeyValue] {
        try await base.range(prefix: prefix)
    }

    func put(_ key: String, value: [UInt8], lease: LeaseID?) async throws(LinearizableStoreError) -> Int64 {
        try await base.put(key, value: value, lease: lease)
    }

    func delete(_ key: String) async throws(LinearizableStoreError) -> DeleteResult {
        try await base.delete(key)
    }

    func grantLease(ttl: Duration) async throws(LinearizableStoreError) -> Lease {
        try await base.grantLease(ttl: ttl)
    }

    func keepAlive(_ id: LeaseID) async throws(LinearizableStoreError) -> Duration {
        try await base.keepAlive(id)
    }

    func revokeLease(_ id: LeaseID) async throws(LinearizableStoreError) {
        try await base.revokeLease(id)
    }

    func leaseTimeToLive(_ id: LeaseID) async throws(LinearizableStoreError) -> LeaseStatus {
        try await base.leaseTimeToLive(id)
    }
}
