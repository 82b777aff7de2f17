/// A failure of the eventually-global tier: global registers, their
/// replication between regions, and the rate limits stored in them.
/// `ProblemDetails` maps each code to its HTTP status.
public struct GlobalStateError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// 404: no register of that name exists in this region (yet).
        case registerNotFound = "register-not-found"
        /// 409: a new register would exceed the region's register limit.
        case registerLimitReached = "register-limit-reached"
        /// 413: a register value's JSON is larger than the value limit.
        case valueTooLarge = "register-value-too-large"
        /// 404: no rate limit is set for the tenant.
        case rateLimitNotFound = "rate-limit-not-found"
        /// 401: an internal request is not signed by a key of the key ring.
        case peerSignatureInvalid = "peer-signature-invalid"
        /// 403: an internal request names a sender that is not a peer region.
        case unknownPeer = "unknown-peer"
        /// 422: a received stamp's physical time is further ahead of this
        /// region's wall clock than the hybrid logical clock accepts.
        case clockDrift = "clock-drift"
    }

    public let code: Code
    /// The register, tenant, region or field the error is about.
    public let subject: String
    /// A sentence naming what failed, the value, and the next step.
    public let detail: String

    public init(_ code: Code, subject: String, _ detail: String) {
        self.code = code
        self.subject = subject
        self.detail = detail
    }

    public var description: String { "\(code.rawValue): \(detail)" }
}
