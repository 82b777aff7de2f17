/// A failure of the billing counters: a code, a sentence naming the record,
/// tenant or key, and an optional cause.
public struct BillingError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// A usage record field breaks its rule. `field` names it.
        case invalidRecord = "invalid-usage-record"
        /// A record with this request id was already recorded with other
        /// tokens or another model. The first record is kept.
        case requestConflict = "usage-request-conflict"
        /// The region has `maximumPendingRecords` unflushed records, so it
        /// rejects new ones until a flush reaches the store.
        case bufferFull = "usage-buffer-full"
        /// The linearizable store cannot be reached. Unflushed records stay
        /// buffered, and a write may or may not have been applied.
        case storeUnavailable = "billing-store-unavailable"
        /// Every attempt to apply a batch lost the compare on the tenant's
        /// totals to another region's flush. The records stay buffered for
        /// the next flush.
        case contention = "billing-contention"
        /// The store rejected a request or returned a value this code cannot
        /// read, such as a totals key that is not `{"tokens","records"}`.
        case storeFailed = "billing-store-failed"
        /// Adding a batch would take a tenant's totals past `Int64.max`.
        case totalsOverflow = "billing-totals-overflow"
        /// The durable usage log could not be read or written.
        case logFailed = "usage-log-failed"
        /// A `BillingRecorder.Configuration` field is out of range. `field` names it.
        case invalidConfiguration = "invalid-billing-configuration"
    }

    public let code: Code
    /// A sentence naming the value that failed and what to do next.
    public let detail: String
    /// For `invalidRecord`, the request body field at fault; for
    /// `invalidConfiguration`, the configuration field.
    public let field: String?
    /// The error underneath, such as the store's error behind `storeUnavailable`.
    public let cause: (any Error)?

    public init(_ code: Code, field: String? = nil, _ detail: String, cause: (any Error)? = nil) {
        self.code = code
        self.field = field
        self.detail = detail
        self.cause = cause
    }

    public var description: String {
        guard let cause else { return "\(code.rawValue): \(detail)" }
        return "\(code.rawValue): \(detail) (cause: \(cause))"
    }

    /// Wraps a store error: `unavailable` stays retryable, the rest become `storeFailed`.
    static func store(_ error: LinearizableStoreError, during operation: String) -> BillingError {
        switch error.code {
        case .unavailable:
            return BillingError(
                .storeUnavailable,
                "the linearizable store is unavailable during \(operation); buffered records are kept and flushed when it returns",
                cause: error)
        case .leaseNotFound, .keyTooLarge, .valueTooLarge, .invalidArgument, .unexpectedResponse:
            return BillingError(.storeFailed, "the linearizable store failed \(operation): \(error.message)", cause: error)
        }
    }
}
