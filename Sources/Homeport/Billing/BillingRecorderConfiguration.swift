extension BillingRecorder {
    /// The settings of one region's billing recorder, with units in the types.
    public struct Configuration: Sendable, Equatable {
        /// Time between periodic flushes. Default 1 s.
        public var flushInterval: Duration = .seconds(1)
        /// Maximum records per batch transaction, from 1 to 126, because etcd's default
        /// `--max-txn-ops` of 128 must hold the records plus the batch marker
        /// and the totals. Default 100.
        ///
        /// NOTE: an etcd started with a lower `--max-txn-ops` rejects larger
        /// batches, and they never flush, so set this at most that limit minus 2.
        public var maximumRecordsPerBatch = 100
        /// Maximum unflushed records in the region. Beyond it `record` rejects
        /// new ones with `bufferFull`. Default 100,000.
        public var maximumPendingRecords = 100_000
        /// Maximum flushed records the region remembers, so that a duplicate gets the
        /// first record back without a store round trip. Older ones are
        /// forgotten, and a duplicate of one is accepted again and dropped at
        /// its flush by the store's request keys. Default 100,000.
        public var maximumRememberedRecords = 100_000
        /// How long the store keeps batch markers and request keys after the
        /// commit that wrote them: a duplicate whose batch commits within this
        /// window is not counted. At least 1 s. Default 24 hours.
        public var deduplicationWindow: Duration = .seconds(86_400)
        /// How long the region attaches new keys to one retention lease before
        /// it grants another. The lease's TTL is `deduplicationWindow` plus this
        /// interval, so keys live between the window and the window plus this
        /// interval. At least 1 s. Default 1 hour.
        public var leaseRotationInterval: Duration = .seconds(3600)
        /// Maximum transactions per batch in one flush before the flush gives up
        /// on it with `contention`. Every failed compare on the totals means
        /// another flush committed, so `n` regions flushing one tenant need at
        /// most `n` attempts. Default 32.
        public var maximumAttemptsPerBatch = 32
        /// Maximum tenants whose batches one flush sends at once. A tenant's own
        /// batches go one after another, because they compare the same totals
        /// key. Default 4.
        public var maximumConcurrentTenants = 4
        /// The directory of the durable usage log (`usage.log`). Nil keeps the
        /// records in memory only, so a crash loses those not yet flushed.
        public var dataDirectory: String?
        /// When the usage log forces its writes to disk. Default: with a write
        /// at least 1 s after the last `fsync`.
        public var fsync: FsyncPolicy = .periodic(.seconds(1))

        public init() {}

        /// Checks every field.
        ///
        /// - Throws: `ConfigurationError` naming the field and its range.
        public func validate() throws(ConfigurationError) {
            guard flushInterval >= .milliseconds(1) else {
                throw ConfigurationError(field: "billing.flushInterval", detail: "\(flushInterval) must be at least 1 ms")
            }
            guard (1...126).contains(maximumRecordsPerBatch) else {
                throw ConfigurationError(
                    field: "billing.maximumRecordsPerBatch",
                    detail:
                        "\(maximumRecordsPerBatch) must be from 1 to 126, so a batch transaction fits etcd's default limit of 128 operations"
                )
            }
            guard maximumPendingRecords >= 1 else {
                throw ConfigurationError(field: "billing.maximumPendingRecords", detail: "\(maximumPendingRecords) must be at least 1")
            }
            guard maximumRememberedRecords >= 0 else {
                throw ConfigurationError(
                    field: "billing.maximumRememberedRecords", detail: "\(maximumRememberedRecords) must not be negative")
            }
            guard deduplicationWindow >= .seconds(1) else {
                throw ConfigurationError(field: "billing.deduplicationWindow", detail: "\(deduplicationWindow) must be at least 1 s")
            }
            guard leaseRotationInterval >= .seconds(1) else {
                throw ConfigurationError(field: "billing.leaseRotationInterval", detail: "\(leaseRotationInterval) must be at least 1 s")
            }
            guard deduplicationWindow + leaseRotationInterval <= LinearizableStoreLimits.maximumLeaseTTL else {
                throw ConfigurationError(
                    field: "billing.deduplicationWindow",
                    detail:
                        "the window plus the lease rotation interval must not pass the maximum lease TTL \(LinearizableStoreLimits.maximumLeaseTTL)"
                )
            }
            guard maximumAttemptsPerBatch >= 1 else {
                throw ConfigurationError(field: "billing.maximumAttemptsPerBatch", detail: "\(maximumAttemptsPerBatch) must be at least 1")
            }
            guard maximumConcurrentTenants >= 1 else {
                throw ConfigurationError(
                    field: "billing.maximumConcurrentTenants", detail: "\(maximumConcurrentTenants) must be at least 1")
            }
            if let dataDirectory, dataDirectory.isEmpty {
                throw ConfigurationError(
                    field: "billing.dataDirectory", detail: "the path is empty, so give a directory, or nil to keep records in memory only")
            }
            if case .periodic(let interval) = fsync, interval < .zero {
                throw ConfigurationError(field: "billing.fsync", detail: "the fsync interval \(interval) must not be negative")
            }
        }
    }
}
