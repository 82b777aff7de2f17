import Foundation
import Homeport

/// `homeport serve`: runs the nodes of one or more regions until SIGINT or SIGTERM.
enum ServeCommand {
    static let usage = """
        usage: homeport serve [options]

        Runs the nodes of the chosen regions of the topology in this process, each
        on the host and port the topology gives it, until SIGINT or SIGTERM. Regions
        not chosen are reached at their configured addresses.

        options:
          --topology FILE    regions, ports and latency matrix (JSON); required
          --region NAME      a region to run here (repeatable; default: every region)
          --policy FILE      policy table (JSON); default: the built-in table
          --keys FILE        routing token keys: {"signingKeyID": "k1", "keys": {"k1": "<base64url>"}};
                             default: a fresh random key, so tokens do not survive a restart
                             and other processes cannot verify them
          --data-dir DIR     keep each region's session log in DIR/<region>.log and rebuild its
                             sessions from it at start; without it sessions live in memory only
          --fsync POLICY     always (fsync before every acknowledgement) or periodic (the
                             default: every write reaches the file before it is acknowledged,
                             so a killed process loses nothing, and fsync runs every second on
                             a thread of its own)
          --etcd HOST:PORT   an etcd member's client address (repeatable, or comma-separated):
                             the shared linearizable store for region leases and takeover
                             records. With it, a region that stops renewing its lease fences
                             itself, its neighbour takes its sessions over, and it reconciles
                             forward when it returns; without it nothing takes over
          --redis HOST:PORT  keep home sessions in this Redis server (6.2 or newer) instead of
                             memory; each region's keys start with homeport:<region>. Run Redis
                             with appendonly yes so that its data survives a restart of Redis
                             itself; --data-dir then holds only the billing usage log
          --lease-ttl-ms N   the region lease's TTL in milliseconds (default 5000, at least
                             2000 as etcd grants whole seconds of at least 2)
          --log-level LEVEL  debug, info, warning or error (default info)
        """

    static func run(_ arguments: [String]) async -> Int32 {
        do {
            let options = try CommandLineOptions(
                arguments,
                valued: [
                    "topology", "region", "policy", "keys", "log-level", "data-dir", "fsync", "etcd", "redis", "lease-ttl-ms",
                ],
                switches: ["help"])
            if options.has("help") {
                print(usage)
                return 0
            }
            try options.rejectPositional()
            return try await serve(options)
        } catch let error as CommandLineOptions.UsageError {
            printError("homeport serve: \(error)\nRun `homeport serve --help` for the options.")
            return 2
        } catch {
            printError("homeport serve: \(error)")
            return 2
        }
    }

    private static func serve(_ options: CommandLineOptions) async throws -> Int32 {
        let logLevelName = options.string("log-level") ?? "info"
        guard let logLevel = LogLevel(name: logLevelName) else {
            throw CommandLineOptions.UsageError(description: "--log-level must be debug, info, warning or error, got \"\(logLevelName)\"")
        }
        let logger = Logger(label: "homeport.serve", sink: LogSink(minimumLevel: logLevel))

        guard let topologyPath = options.string("topology") else {
            throw CommandLineOptions.UsageError(description: "--topology FILE is required (see config/topology.json)")
        }
        let topology = try TopologyFile.load(path: topologyPath)
        let chosen = options.strings("region").isEmpty ? topology.regionNames : options.strings("region")
        for region in chosen where topology.endpoint(region) == nil {
            throw CommandLineOptions.UsageError(
                description: "--region \(region) is not in \(topologyPath); it has \(topology.regionNames.joined(separator: ", "))")
        }

        let policy = try options.string("policy").map { path throws in try PolicyTable.load(path: path) } ?? .defaultTable
        let errors = policy.validate().filter { $0.severity == .error }
        guard errors.isEmpty else {
            throw CommandLineOptions.UsageError(
                description: "the policy table has errors:\n" + errors.map(\.description).joined(separator: "\n"))
        }
        try policy.checkServable()
        let limits = try SessionStoreLimits(policy: policy)

        let keyRing: TokenKeyRing
        if let keysPath = options.string("keys") {
            keyRing = try TokenKeyRing.load(path: keysPath)
        } else {
            keyRing = try TokenKeyRing.generated()
            logger.warning("no --keys file: signing with a fresh random key", ["keyID": keyRing.signingKeyID])
        }

        let fsyncPolicy: FsyncPolicy
        switch options.string("fsync") ?? "periodic" {
        case "always": fsyncPolicy = .always
        case "periodic": fsyncPolicy = .periodic(.seconds(1))
        case let other:
            throw CommandLineOptions.UsageError(description: "--fsync must be always or periodic, got \"\(other)\"")
        }
        let dataDirectory = options.string("data-dir")
        if let dataDirectory {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dataDirectory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw CommandLineOptions.UsageError(
                    description: "--data-dir \(dataDirectory) is not an existing directory; create it first")
            }
        }

        let clock = SystemClock()
        let peers = InterRegionClient(topology: topology, clock: clock)
        var assembly = RegionAssembly(
            topology: topology, limits: limits, policy: policy, keyRing: keyRing, clock: clock, logger: logger,
            metrics: MetricsRegistry(), peers: peers)
        assembly.dataDirectory = dataDirectory
        assembly.fsync = fsyncPolicy
        if let address = options.string("redis") {
            let (host, port) = try hostAndPort(address, option: "redis", example: "127.0.0.1:6379")
            assembly.sessionBackend = .redis(RedisSessionStore.Configuration(host: host, port: Int(port)))
        }
        if let store = try linearizableStore(options, logger: logger) {
            // Regions in separate processes share leases and takeover records through etcd.
            assembly.linearizableStore = store
            assembly.lease = try leaseConfiguration(options)
        } else {
            logger.warning("no --etcd: regions hold no leases, so a failed region is not taken over")
        }

        var nodes: [RegionNode] = []
        for region in chosen {
            let node = try assembly.makeNode(topology.endpoint(region)!)
            peers.setPort(try await node.startServing(), of: region)
            nodes.append(node)
        }

        let signal = await ShutdownSignal.wait()
        logger.info("shutting down", ["signal": signal])
        // Drain the listeners first, so every acknowledged write is in the
        // outbox, then give replication a moment to ship it before stopping.
        await withTaskGroup(of: Void.self) { group in
            for node in nodes {
                group.addTask {
                    await node.leaseKeeper?.stop()
                    await node.takeovers?.stop()
                    await node.shutdown()
                }
            }
        }
        await withTaskGroup(of: Void.self) { group in
            for node in nodes {
                guard let shipper = node.replication else { continue }
                group.addTask { await shipper.drained() }
                group.addTask {
                    try? await Task.sleep(for: .seconds(2))
                    await shipper.stop()
                }
            }
        }
        for node in nodes {
            node.store.shutdown()
        }
        return 0
    }

    /// Returns the etcd store that `--etcd` names, or nil without the option.
    private static func linearizableStore(_ options: CommandLineOptions, logger: Logger) throws -> (any LinearizableStore)? {
        let addresses = options.strings("etcd").flatMap { $0.split(separator: ",").map(String.init) }
        guard !addresses.isEmpty else { return nil }
        var endpoints: [EtcdLinearizableStore.Endpoint] = []
        for address in addresses {
            let (host, port) = try hostAndPort(address, option: "etcd", example: "127.0.0.1:2379")
            endpoints.append(EtcdLinearizableStore.Endpoint(host: host, port: port))
        }
        return try EtcdLinearizableStore(configuration: EtcdLinearizableStore.Configuration(endpoints: endpoints), logger: logger)
    }

    /// Splits `HOST:PORT`, the value of `--option`.
    private static func hostAndPort(_ address: String, option: String, example: String) throws -> (String, UInt16) {
        let parts = address.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, let port = UInt16(parts[1]), port > 0 else {
            throw CommandLineOptions.UsageError(description: "--\(option) \(address) is not HOST:PORT, such as \(example)")
        }
        return (String(parts[0]), port)
    }

    /// Builds the region lease from `--lease-ttl-ms`: renewed every 30% of the
    /// TTL, and given up 20% of the TTL before it expires.
    private static func leaseConfiguration(_ options: CommandLineOptions) throws -> RegionLease.Configuration {
        var lease = RegionLease.Configuration()
        if let ttl = try options.integer("lease-ttl-ms", in: 2000...600_000) {
            lease.ttl = .milliseconds(ttl)
            lease.renewInterval = .milliseconds(ttl * 3 / 10)
            lease.safetyMargin = .milliseconds(ttl / 5)
        }
        try lease.validate()
        return lease
    }
}

/// Waits for SIGINT or SIGTERM on a dispatch source.
enum ShutdownSignal {
    static func wait() async -> String {
        await withCheckedContinuation { (continuation: CheckedContinuation<String, Never>) in
            let queue = DispatchQueue(label: "homeport.signals")
            let resumed = ResumeOnce(continuation)
            for (number, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")] {
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
                source.setEventHandler { resumed.resume(name) }
                source.resume()
                SignalSources.keep(source)
            }
        }
    }
}

/// Resumes a continuation on the first signal only; the queue serialises calls.
private final class ResumeOnce: @unchecked Sendable {
    private var continuation: CheckedContinuation<String, Never>?

    init(_ continuation: CheckedContinuation<String, Never>) {
        self.continuation = continuation
    }

    /// Resumes the waiter on the first signal; a second one exits at once,
    /// for an operator who will not wait for in-flight requests to drain.
    func resume(_ name: String) {
        guard let continuation else {
            exit(130)
        }
        continuation.resume(returning: name)
        self.continuation = nil
    }
}

/// Keeps signal sources alive for the life of the process.
private enum SignalSources {
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []

    static func keep(_ source: any DispatchSourceSignal) {
        sources.append(source)
    }
}
