/// A failed reconcile-forward step, at the returning region or at the region
/// that took it over.
public struct ReconcileError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// 409: the node asked to merge has not taken over the sender's region.
        case notTakenOver = "not-taken-over"
        /// The region that took over returned an error or could not be reached.
        case peerFailed = "reconcile-peer-failed"
        /// The takeover record changed while the reconcile ran.
        case recordChanged = "takeover-record-changed"
    }

    public let code: Code
    /// The region on the other side of the reconcile.
    public let region: String
    public let detail: String

    public init(_ code: Code, region: String, _ detail: String) {
        self.code = code
        self.region = region
        self.detail = detail
    }

    public var description: String { "\(code.rawValue): \(detail)" }
}
