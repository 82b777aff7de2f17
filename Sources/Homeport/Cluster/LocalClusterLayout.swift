import Foundation

/// The file layout and ports of a local cluster, and the command line of
/// each of its processes.
///
/// ```
/// DIR/cluster.json          state file
/// DIR/topology.json         the topology with the serve ports
/// DIR/keys.json             the routing-token key every region shares
/// DIR/logs/ROLE-REGION.log  each process's standard output and error
/// DIR/REGION/redis/         Redis's append-only file
/// DIR/REGION/etcd/          the etcd member's data directory
/// DIR/REGION/server/        the serve process's --data-dir (billing usage log)
/// ```
///
/// Every listener binds 127.0.0.1.
struct LocalClusterLayout: Sendable {
    /// The five ports of one region.
    struct RegionPorts: Sendable, Equatable {
        var redis: UInt16
        var etcdClient: UInt16
        var etcdPeer: UInt16
        /// The delay proxy in front of `etcdPeer`, which the member advertises as its peer URL.
        var peerProxy: UInt16
        var api: UInt16
    }

    let directory: String
    /// The regions in topology order.
    let regions: [String]
    let ports: [String: RegionPorts]

    var topologyPath: String { path("topology.json") }
    var keysPath: String { path("keys.json") }
    var logDirectory: String { path("logs") }

    func path(_ components: String...) -> String {
        components.reduce(directory) { ($0 as NSString).appendingPathComponent($1) }
    }

    func logPath(_ role: LocalClusterProcess.Role, _ region: String) -> String {
        path("logs", "\(role.rawValue)-\(region).log")
    }

    /// The directories to create before anything starts.
    var directories: [String] {
        [logDirectory] + regions.flatMap { [path($0, "redis"), path($0, "etcd"), path($0, "server")] }
    }

    /// Returns `count` distinct TCP ports on 127.0.0.1 that were free a
    /// moment ago: each is bound to port 0 and the kernel's choice read
    /// back, with all sockets open together so no port repeats.
    ///
    /// NOTE: a port is released before its process binds it, so another
    /// program may take it in between. The process then exits with "address
    /// already in use", and `LocalCluster.start` tries again with new ports.
    static func freeLoopbackPorts(count: Int) throws(LocalClusterError) -> [UInt16] {
        var descriptors: [Int32] = []
        defer {
            for descriptor in descriptors { close(descriptor) }
        }
        var ports: [UInt16] = []
        for _ in 0..<count {
            let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard descriptor >= 0 else {
                throw LocalClusterError(.launchFailed, "cannot open a socket to find a free port: \(String(cString: strerror(errno)))")
            }
            descriptors.append(descriptor)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = 0
            inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0
                }
            }
            guard bound else {
                throw LocalClusterError(
                    .launchFailed, "cannot bind a socket on 127.0.0.1 to find a free port: \(String(cString: strerror(errno)))")
            }
            ports.append(UInt16(bigEndian: address.sin_port))
        }
        return ports
    }

    /// Chooses free ports for every region.
    static func make(directory: String, regions: [String]) throws(LocalClusterError) -> LocalClusterLayout {
        let free = try freeLoopbackPorts(count: regions.count * 5)
        var ports: [String: RegionPorts] = [:]
        for (index, region) in regions.enumerated() {
            let base = index * 5
            ports[region] = RegionPorts(
                redis: free[base], etcdClient: free[base + 1], etcdPeer: free[base + 2], peerProxy: free[base + 3], api: free[base + 4])
        }
        return LocalClusterLayout(directory: directory, regions: regions, ports: ports)
    }

    /// Returns the topology that the serve processes read: the configured regions
    /// and matrix, each region on 127.0.0.1 and its API port.
    func topology(from configured: RegionTopology) throws(LocalClusterError) -> RegionTopology {
        do {
            return try RegionTopology(
                regions: regions.map { RegionEndpoint(name: $0, host: "127.0.0.1", port: ports[$0]!.api) },
                neighbours: configured.neighbours, latency: configured.latency)
        } catch {
            throw LocalClusterError(.invalidConfiguration, "\(error)")
        }
    }

    // MARK: Process command lines

    func redis(_ region: String, configuration: LocalCluster.Configuration) -> LocalClusterProcess {
        let port = ports[region]!.redis
        return LocalClusterProcess(
            role: .redis, region: region, ports: ["redis": port], logPath: logPath(.redis, region),
            executablePath: configuration.redisExecutablePath,
            arguments: [
                "--port", String(port), "--bind", "127.0.0.1", "--protected-mode", "yes", "--daemonize", "no", "--dir",
                path(region, "redis"), "--save", "", "--appendonly", configuration.redisAppendOnly ? "yes" : "no", "--appendfsync",
                "everysec", "--logfile", "",
            ])
    }

    func peerProxy(_ region: String, delay: Duration, executablePath: String) -> LocalClusterProcess {
        let regionPorts = ports[region]!
        return LocalClusterProcess(
            role: .peerProxy, region: region, ports: ["listen": regionPorts.peerProxy], logPath: logPath(.peerProxy, region),
            executablePath: executablePath,
            arguments: [
                "proxy", "--target", "127.0.0.1:\(regionPorts.etcdPeer)", "--delay-ms", String(delay.wholeMilliseconds), "--listen",
                "127.0.0.1:\(regionPorts.peerProxy)",
            ])
    }

    /// Returns the command line of an etcd member that listens for peers on its own port but advertises
    /// its proxy's port, so that what it sends to other members is delayed.
    func etcd(_ region: String, clusterToken: String, configuration: LocalCluster.Configuration) -> LocalClusterProcess {
        let regionPorts = ports[region]!
        let clientURL = "http://127.0.0.1:\(regionPorts.etcdClient)"
        let initialCluster = regions.map { "\($0)=http://127.0.0.1:\(ports[$0]!.peerProxy)" }.joined(separator: ",")
        return LocalClusterProcess(
            role: .etcd, region: region, ports: ["client": regionPorts.etcdClient, "peer": regionPorts.etcdPeer],
            logPath: logPath(.etcd, region), executablePath: configuration.etcdExecutablePath,
            arguments: [
                "--name", region, "--data-dir", path(region, "etcd"),
                "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
                "--listen-peer-urls", "http://127.0.0.1:\(regionPorts.etcdPeer)",
                "--initial-advertise-peer-urls", "http://127.0.0.1:\(regionPorts.peerProxy)",
                "--initial-cluster", initialCluster, "--initial-cluster-state", "new", "--initial-cluster-token", clusterToken,
                "--heartbeat-interval", String(configuration.etcdHeartbeatMilliseconds),
                "--election-timeout", String(configuration.etcdElectionTimeoutMilliseconds),
                // Sessions behind consensus rewrite their meta key on every
                // write; without compaction the history fills etcd's quota.
                "--auto-compaction-mode", "revision", "--auto-compaction-retention", "10000",
                "--logger", "zap", "--log-level", "info",
            ])
    }

    /// Returns the command line of a serve process that uses its region's
    /// Redis and etcd member first, and the other members when its own does
    /// not respond.
    ///
    /// NOTE: calls to another region's member skip the delay proxies, so a
    /// server whose own member is down reaches etcd faster than it would
    /// across regions.
    func server(
        _ region: String, policyPath: String?, configuration: LocalCluster.Configuration
    ) -> LocalClusterProcess {
        let regionPorts = ports[region]!
        let etcdMembers = ([region] + regions.filter { $0 != region }).map { "127.0.0.1:\(ports[$0]!.etcdClient)" }
        var arguments = [
            "serve", "--topology", topologyPath, "--region", region, "--keys", keysPath,
            "--etcd", etcdMembers.joined(separator: ","), "--redis", "127.0.0.1:\(regionPorts.redis)",
            "--lease-ttl-ms", String(configuration.leaseTTLMilliseconds), "--data-dir", path(region, "server"),
            "--log-level", configuration.serverLogLevel,
        ]
        if let policyPath {
            arguments += ["--policy", policyPath]
        }
        return LocalClusterProcess(
            role: .server, region: region, ports: ["api": regionPorts.api], logPath: logPath(.server, region),
            executablePath: configuration.executablePath, arguments: arguments)
    }

    /// Returns `arguments` with its `--policy` option replaced by `policyPath`,
    /// or removed when it is nil.
    static func replacingPolicy(in arguments: [String], with policyPath: String?) -> [String] {
        var result: [String] = []
        var index = 0
        while index < arguments.count {
            if arguments[index] == "--policy" {
                index += 2
                continue
            }
            result.append(arguments[index])
            index += 1
        }
        if let policyPath {
            result += ["--policy", policyPath]
        }
        return result
    }
}
