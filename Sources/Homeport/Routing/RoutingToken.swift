/// The claims of a routing token: which session it names, for which tenant,
/// where the session lives (home region and epoch), and when it is valid.
///
/// The token is the session's directory entry: a node forwards a request to
/// `home` without looking anything up. A new epoch (after a takeover) comes
/// with a new token.
public struct RoutingToken: Sendable, Equatable {
    public var session: SessionID
    public var tenant: TenantID
    public var home: String
    public var epoch: UInt64
    /// Seconds since the Unix epoch.
    public var issuedAt: Int64
    /// Seconds since the Unix epoch; the token is rejected from this second on.
    public var expiresAt: Int64

    public init(session: SessionID, tenant: TenantID, home: String, epoch: UInt64, issuedAt: Int64, expiresAt: Int64) {
        self.session = session
        self.tenant = tenant
        self.home = home
        self.epoch = epoch
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
    }
}

/// Why a routing token was rejected. Every case is answered with `401`.
public struct RoutingTokenError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case missing = "token-missing"
        case malformed = "token-malformed"
        case unknownKey = "token-unknown-key"
        case badSignature = "token-bad-signature"
        case expired = "token-expired"
        case sessionMismatch = "token-session-mismatch"
        case tenantMismatch = "token-tenant-mismatch"
    }

    public let code: Code
    public let detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { "\(code.rawValue): \(detail)" }
}
