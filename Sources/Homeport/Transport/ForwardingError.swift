/// The failure to relay a request to its session's home region.
public struct ForwardingError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// 421: the token names a region that this deployment does not have.
        case unknownRegion = "unknown-home-region"
        /// 508: a forwarded request reached a node that is not the home either.
        case forwardingLoop = "forwarding-loop"
        /// 503: the home region refused the connection or sent an invalid
        /// response; the session is unavailable until it (or a region that
        /// takes it over) responds.
        case homeUnreachable = "home-unreachable"
        /// 504: the home region did not respond in time.
        case timedOut = "home-timed-out"
    }

    public let code: Code
    public let region: String
    public let detail: String

    public init(_ code: Code, region: String, _ detail: String) {
        self.code = code
        self.region = region
        self.detail = detail
    }

    public var description: String { "\(code.rawValue): \(detail)" }
}
