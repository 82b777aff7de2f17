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
                             so a killed process loses nothing, and fsync runs with a write at
                             least a second after the previous fsync)
          --log-level LEVEL  debug, info, warning or error (default info)
        """

    static func run(_ arguments: [String]) async -> Int32 {
        do {
            let options = try CommandLineOptions(
                arguments, valued: ["topology", "region", "policy", "keys", "log-level", "data-dir", "fsync"], switches: ["help"])
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
        // NOTE: serve runs without region leases (no fencing): its regions may
        // run in separate processes, which need a shared linearizable store
        // such as etcd, and only the in-process embedded store exists so far.
        let peers = InterRegionClient(topology: topology, clock: clock)
        let metrics = MetricsRegistry()
        var nodes: [RegionNode] = []
        for region in chosen {
            let endpoint = topology.endpoint(region)!
            var configuration = RegionNodeConfiguration(region: region)
            configuration.http.host = endpoint.host
            configuration.http.port = endpoint.port
            // Rebuild the region's sessions from its log before it serves anything.
            var recovered: [StandbySession] = []
            var sessionLog: SessionLog?
            if let dataDirectory {
                let path = (dataDirectory as NSString).appendingPathComponent("\(region).log")
                let entries = try SessionLog.recover(path: path)
                recovered = try SessionLog.rebuildSessions(from: entries, region: region, limits: limits)
                logger.info("session log recovered", ["region": region, "entries": "\(entries.count)", "sessions": "\(recovered.count)"])
                sessionLog = try SessionLog(path: path, policy: fsyncPolicy, clock: clock)
            }
            let journal = SessionJournal(log: sessionLog)
            let store = MemorySessionStore(limits: limits, journal: journal)
            store.restore(recovered)
            let shipper = try topology.neighbour(of: region).map { neighbour throws in
                try ReplicationShipper(
                    region: region, neighbour: neighbour, configuration: ReplicationOutbox.Configuration(), peers: peers,
                    store: store, keyRing: keyRing, clock: clock, metrics: metrics, logger: logger)
            }
            if let shipper { journal.attach(shipper) }
            let node = RegionNode(
                configuration: configuration, store: store, limits: limits, keyRing: keyRing, peers: peers, metrics: metrics,
                clock: clock, logger: logger, replication: shipper)
            peers.setPort(try node.start(), of: region)
            nodes.append(node)
        }
        for node in nodes {
            node.replication?.start()
        }

        let signal = await ShutdownSignal.wait()
        logger.info("shutting down", ["signal": signal])
        // Drain the listeners first, so every acknowledged write is in the
        // outbox, then give replication a moment to ship it before stopping.
        await withTaskGroup(of: Void.self) { group in
            for node in nodes {
                group.addTask { await node.shutdown() }
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
        return 0
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
