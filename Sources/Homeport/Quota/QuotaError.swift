/// Every error of the quota component: a code, the field or value at fault,
/// and a sentence that names the value and the next step.
///
/// `ProblemDetails` maps each code to its HTTP status. The denial codes
/// (`limitReached`, `amountExceedsLimit`, `storeUnavailable`,
/// `failOpenBoundReached`) also describe a denied reservation, which the
/// service returns as an outcome rather than throws.
public struct QuotaError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// The tenant has no quota policy yet. 404.
        case quotaNotFound = "quota-not-found"
        /// No reservation with this request id is known to this region. 404.
        case reservationNotFound = "reservation-not-found"
        /// The request id was first used with other arguments. 422.
        case requestIDReused = "request-id-reused"
        /// A commit reports more tokens used than were reserved. 422.
        case usedExceedsReserved = "used-exceeds-reserved"
        /// The reservation is no longer held: committed, released, expired or denied. 409.
        case reservationNotHeld = "reservation-not-held"
        /// A new limit is below what is consumed and held in chunks. 409.
        case limitBelowUsage = "limit-below-usage"
        /// A policy field is out of range. 400.
        case invalidPolicy = "invalid-policy"
        /// A reserved or used amount is out of range. 400.
        case invalidAmount = "invalid-amount"
        /// Denied: the period's limit is reached. 429.
        case limitReached = "quota-exceeded"
        /// Denied: the amount is larger than the whole limit, so it can never be granted. 422.
        case amountExceedsLimit = "amount-exceeds-limit"
        /// Denied in fail-closed mode, or a policy or status request failed,
        /// because the linearizable store cannot be reached. 503.
        case storeUnavailable = "quota-store-unavailable"
        /// Denied in fail-open mode: the store cannot be reached and this
        /// region has admitted its whole fail-open bound for the period. 503.
        case failOpenBoundReached = "fail-open-bound-reached"
        /// The stored quota record cannot be read or would break the
        /// invariant; nothing was written. 500.
        case corruptRecord = "corrupt-quota-record"
    }

    public let code: Code
    /// The body field or path parameter at fault, when one is.
    public let field: String?
    /// The failure, the value at fault, and what to do next.
    public let detail: String

    public init(_ code: Code, field: String? = nil, _ detail: String) {
        self.code = code
        self.field = field
        self.detail = detail
    }

    public var description: String { "\(code.rawValue): \(detail)" }
}
