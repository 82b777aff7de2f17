/// The outcome of one flush.
public struct BillingFlushReport: Sendable, Equatable {
    /// Batch transactions that committed.
    public var batchesApplied = 0
    /// Records those transactions counted.
    public var recordsApplied = 0
    /// Tokens those transactions counted.
    public var tokensApplied: Int64 = 0
    /// Batches whose marker was already in the store: an earlier send committed and its response was lost.
    public var batchesAlreadyApplied = 0
    /// Records not counted again because a batch had counted them already.
    public var recordsAlreadyCounted = 0
    /// Of those, records whose counted copy has other tokens or another model. The counted copy is kept.
    public var recordsConflicting = 0
    /// Transactions sent again after a failed compare or an expired lease.
    public var retries = 0

    public init() {}

    mutating func add(_ other: BillingFlushReport) {
        batchesApplied += other.batchesApplied
        recordsApplied += other.recordsApplied
        tokensApplied += other.tokensApplied
        batchesAlreadyApplied += other.batchesAlreadyApplied
        recordsAlreadyCounted += other.recordsAlreadyCounted
        recordsConflicting += other.recordsConflicting
        retries += other.retries
    }
}
