import Foundation

extension LocalCluster {
    /// The settings of a local cluster: topology, executables, directory,
    /// policy, lease and etcd timings.
    public struct Configuration: Sendable {
        /// Regions and latency matrix. It must have exactly three regions; their
        /// hosts and ports are ignored, since every process listens on a free
        /// ephemeral port on 127.0.0.1.
        public var topology: RegionTopology
        /// The `homeport` executable that runs `serve` and `proxy`.
        public var executablePath: String
        /// The cluster's directory: state file, logs and data. It must not
        /// exist or be empty, and `stop()` removes it.
        public var directory: String
        /// The policy table of the serve processes; nil for the built-in table.
        public var policyPath: String?
        /// The region lease TTL of each serve process, in milliseconds (at
        /// least 2000, as etcd grants whole seconds of at least 2).
        public var leaseTTLMilliseconds = 5000
        /// etcd's `--heartbeat-interval` in milliseconds. etcd's tuning guide
        /// advises about the largest round trip between members, which is 136 ms
        /// with the default matrix.
        public var etcdHeartbeatMilliseconds = 150
        /// etcd's `--election-timeout` in milliseconds. etcd 3.4 rejects less
        /// than 5 heartbeats or more than 50 000 ms; at least 10 round trips
        /// is the usual advice.
        public var etcdElectionTimeoutMilliseconds = 1500
        /// The region whose etcd member leads after start; nil for the first region.
        public var leaderRegion: String?
        /// When true, Redis keeps an append-only file (`appendfsync everysec`),
        /// so its data survives a restart of Redis itself.
        public var redisAppendOnly = true
        public var redisExecutablePath = "/usr/bin/redis-server"
        public var etcdExecutablePath = "/usr/bin/etcd"
        /// The `--log-level` of the serve processes.
        public var serverLogLevel = "info"
        /// How long each process may take to become ready.
        public var readinessTimeout: Duration = .seconds(30)
        /// How long `stop()` waits after SIGTERM before it sends SIGKILL.
        public var stopGracePeriod: Duration = .seconds(5)

        public init(topology: RegionTopology, executablePath: String, directory: String) {
            self.topology = topology
            self.executablePath = executablePath
            self.directory = directory
        }

        /// The region whose member should lead: `leaderRegion` or the first region.
        public var leader: String { leaderRegion ?? topology.regionNames.first ?? "" }

        /// Checks every field and solves the peer delays.
        ///
        /// - Throws: `invalidConfiguration` naming the field and the fix.
        public func validate() throws(LocalClusterError) -> EtcdPeerDelays {
            let delays: EtcdPeerDelays
            do {
                delays = try EtcdPeerDelays.solve(topology)
            } catch {
                throw LocalClusterError(.invalidConfiguration, "\(error)")
            }

            guard topology.regionNames.contains(leader) else {
                throw LocalClusterError(
                    .invalidConfiguration,
                    "the leader region \"\(leader)\" is not in the topology; use one of \(topology.regionNames.joined(separator: ", "))")
            }
            guard (2000...600_000).contains(leaseTTLMilliseconds) else {
                throw LocalClusterError(
                    .invalidConfiguration, "the lease TTL must be from 2000 to 600000 ms, got \(leaseTTLMilliseconds)")
            }
            guard etcdHeartbeatMilliseconds >= 1 else {
                throw LocalClusterError(
                    .invalidConfiguration, "the etcd heartbeat interval must be at least 1 ms, got \(etcdHeartbeatMilliseconds)")
            }
            guard etcdElectionTimeoutMilliseconds >= 5 * etcdHeartbeatMilliseconds, etcdElectionTimeoutMilliseconds <= 50_000 else {
                throw LocalClusterError(
                    .invalidConfiguration,
                    "the etcd election timeout must be at least 5 heartbeat intervals (\(5 * etcdHeartbeatMilliseconds) ms) and at most 50000 ms, as etcd requires; got \(etcdElectionTimeoutMilliseconds)"
                )
            }
            let largestRoundTrip =
                topology.regionNames.flatMap { first in
                    topology.regionNames.map { second in delays.roundTrip(first, second) }
                }.max() ?? .zero
            guard Duration.milliseconds(etcdElectionTimeoutMilliseconds) > largestRoundTrip * 2 else {
                throw LocalClusterError(
                    .invalidConfiguration,
                    "the etcd election timeout (\(etcdElectionTimeoutMilliseconds) ms) must exceed twice the largest round trip between members (\(largestRoundTrip.wholeMilliseconds) ms), or followers start elections while the leader's heartbeats are still in flight"
                )
            }
            guard LogLevel(name: serverLogLevel) != nil else {
                throw LocalClusterError(
                    .invalidConfiguration, "the server log level must be debug, info, warning or error, got \"\(serverLogLevel)\"")
            }
            guard readinessTimeout > .zero, stopGracePeriod >= .zero else {
                throw LocalClusterError(.invalidConfiguration, "the readiness timeout must be positive and the grace period not negative")
            }

            for (name, path) in [
                ("homeport", executablePath), ("redis-server", redisExecutablePath), ("etcd", etcdExecutablePath),
            ] where !FileManager.default.isExecutableFile(atPath: path) {
                let fix =
                    name == "homeport"
                    ? "build it with `swift build --product homeport`"
                    : "install it with scripts/setup.sh (Debian packages redis-server and etcd-server)"
                throw LocalClusterError(.invalidConfiguration, "\(name) is not an executable file at \(path); \(fix)")
            }
            if let policyPath {
                try Self.checkPolicy(path: policyPath)
            }
            return delays
        }

        /// Loads a policy table and checks that `homeport serve` accepts it, so
        /// that a bad file fails before any process is stopped or started.
        ///
        /// - Throws: `invalidConfiguration` with the file's errors.
        static func checkPolicy(path: String) throws(LocalClusterError) {
            let policy: PolicyTable
            do {
                policy = try PolicyTable.load(path: path)
            } catch {
                throw LocalClusterError(.invalidConfiguration, "cannot use the policy table \(path): \(error)")
            }
            let errors = policy.validate().filter { $0.severity == .error }
            guard errors.isEmpty else {
                throw LocalClusterError(
                    .invalidConfiguration, "the policy table \(path) has errors:\n" + errors.map(\.description).joined(separator: "\n"))
            }
            do {
                try policy.checkServable()
            } catch {
                throw LocalClusterError(.invalidConfiguration, "the policy table \(path) cannot be served: \(error)")
            }
        }
    }
}
