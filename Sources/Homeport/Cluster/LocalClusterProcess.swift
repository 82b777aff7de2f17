/// One process of a local cluster, as the state file `cluster.json` lists it.
public struct LocalClusterProcess: Sendable, Equatable, Codable {
    /// The process's job in its region.
    public enum Role: String, Sendable, Codable, CaseIterable {
        /// `redis-server`, the region's fast store for session state.
        case redis
        /// The region's etcd member.
        case etcd
        /// `homeport proxy` in front of the etcd member's peer port.
        case peerProxy = "peer-proxy"
        /// `homeport serve` for the region.
        case server
    }

    public var role: Role
    public var region: String
    /// The process id, or 0 before the first launch.
    public var pid: Int32
    /// When the process started, in clock ticks since boot (field 22 of
    /// `/proc/PID/stat`). A later process that reuses the pid has another
    /// start time, so it is never signalled by mistake.
    public var startTime: UInt64
    /// The loopback ports the process listens on, by purpose: `redis`,
    /// `client` and `peer` (etcd), `listen` (proxy), `api` (serve).
    public var ports: [String: UInt16]
    /// The file that receives the process's standard output and standard error.
    public var logPath: String
    public var executablePath: String
    public var arguments: [String]

    public init(
        role: Role, region: String, pid: Int32 = 0, startTime: UInt64 = 0, ports: [String: UInt16], logPath: String,
        executablePath: String, arguments: [String]
    ) {
        self.role = role
        self.region = region
        self.pid = pid
        self.startTime = startTime
        self.ports = ports
        self.logPath = logPath
        self.executablePath = executablePath
        self.arguments = arguments
    }

    /// The process in words for messages, such as `etcd us-east`.
    public var name: String { "\(role.rawValue) \(region)" }

    /// True while the process this record names runs. A zombie, or another
    /// process that reuses the pid, does not count.
    public var isRunning: Bool {
        pid > 0 && ProcessControl.startTime(of: pid) == startTime
    }
}
