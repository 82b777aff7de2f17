/// A failure to start, inspect or stop a local cluster. The detail names the
/// process (role, region, pid), its log file and what to do next.
public struct LocalClusterError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// A configuration value is invalid; nothing was started.
        case invalidConfiguration = "invalid-configuration"
        /// The directory contains a cluster whose processes still run.
        case alreadyRunning = "already-running"
        /// The directory exists and is not empty, or cannot be created.
        case directoryUnusable = "directory-unusable"
        /// The directory has no cluster state file, or it cannot be read.
        case stateFileInvalid = "state-file-invalid"
        /// A region that is not part of the cluster.
        case unknownRegion = "unknown-region"
        /// A process could not be launched.
        case launchFailed = "launch-failed"
        /// A process exited before it was ready.
        case exitedEarly = "exited-early"
        /// A process did not become ready in time.
        case notReady = "not-ready"
        /// etcd did not move its leadership to the chosen member.
        case leaderPlacementFailed = "leader-placement-failed"
        /// A process did not exit after SIGKILL.
        case stopFailed = "stop-failed"
    }

    public let code: Code
    public let detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { detail }
}
