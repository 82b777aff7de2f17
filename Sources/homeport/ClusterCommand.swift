import Foundation
import Homeport
import Synchronization

/// `homeport cluster`: starts, inspects, replays through and stops a
/// three-region cluster of real processes on this machine.
enum ClusterCommand {
    static let usage = """
        usage: homeport cluster <up|down|status|replay> --dir DIR [options]

        Runs Homeport as it is deployed, on loopback: per region a redis-server,
        one member of a three-member etcd cluster whose peer traffic passes a delay
        proxy, and a `homeport serve` process using both. Each listener binds
        127.0.0.1 on a free ephemeral port; DIR holds the state file cluster.json,
        the logs (DIR/logs) and the data.

        commands:
          up       start every process, make the chosen region's etcd member the
                   leader, print the URLs and return; the processes keep running
          down     stop every process of the cluster in DIR and remove DIR
          status   list the processes, the URLs and the etcd leader; exits 1 when a
                   process is not running
          replay   replay the Mooncake trace through the running cluster and print
                   the report; exits 1 on any error or lost acknowledged write

        options of every command:
          --dir DIR              the cluster's directory (required); for up it must
                                 not exist or be empty, because down removes it

        options of up:
          --topology FILE        regions and latency matrix (JSON) with exactly three
                                 regions; default: us-east, us-west, eu-west with
                                 44/40/68 ms one-way (config/topology.json); its
                                 ports are ignored
          --policy FILE          policy table of the serve processes (JSON); default:
                                 the built-in table
          --leader REGION        the region whose etcd member leads (default: the first)
          --lease-ttl-ms N       the region lease TTL of the serve processes (default
                                 5000, at least 2000)
          --heartbeat-ms N       etcd --heartbeat-interval (default 150, about the
                                 largest round trip between members)
          --election-timeout-ms N
                                 etcd --election-timeout (default 1500, 10 heartbeats)
          --no-appendonly        run Redis without its append-only file
          --log-level LEVEL      the serve processes' log level: debug, info (default),
                                 warning or error

        options of replay:
          --trace PATH           Mooncake conversation trace (JSONL); default
                                 $HOMEPORT_TRACE or \(DemoCommand.defaultTracePath)
          --limit N              replay only the first N requests
          --speed X              time compression: trace time is divided by X (default 30)
          --roaming SHARE        share of follow-ups entering at another region (0 to 1,
                                 default 0.05)
          --tool-calls SHARE     share of requests that write a tool call (0 to 1,
                                 default 0.1)
          --seed N               seed of every random choice (default 42)
          --kill-region REGION   SIGKILL this region's serve process part way through
                                 and start it again later
          --kill-at SHARE        when, as a share of the replay (default 0.4)
          --restart-at SHARE     when it starts again (default 0.7)
          --cross-session        also reserve quota, record billing and read router
                                 weights on every request (etcd-backed quotas and billing)
        """

    static func run(_ arguments: [String]) async -> Int32 {
        guard let subcommand = arguments.first, !subcommand.hasPrefix("--") || subcommand == "--help" else {
            printError("homeport cluster: a command is required: up, down, status or replay\n\n\(usage)")
            return 2
        }
        if subcommand == "--help" || subcommand == "help" {
            print(usage)
            return 0
        }
        let rest = Array(arguments.dropFirst())
        do {
            switch subcommand {
            case "up":
                return try await up(rest)
            case "down":
                return try await down(rest)
            case "status":
                return try await status(rest)
            case "replay":
                return try await replay(rest)
            default:
                throw CommandLineOptions.UsageError(description: "unknown command \"\(subcommand)\"; use up, down, status or replay")
            }
        } catch let error as CommandLineOptions.UsageError {
            printError("homeport cluster \(subcommand): \(error)\nRun `homeport cluster --help` for the options.")
            return 2
        } catch let error as LocalClusterError {
            printError("homeport cluster \(subcommand): \(error)")
            return isUsageError(error) ? 2 : 1
        } catch {
            printError("homeport cluster \(subcommand): \(error)")
            return 1
        }
    }

    /// True for errors in what the user asked for, which exit with status 2.
    private static func isUsageError(_ error: LocalClusterError) -> Bool {
        switch error.code {
        case .invalidConfiguration, .alreadyRunning, .directoryUnusable, .stateFileInvalid, .unknownRegion:
            return true
        case .launchFailed, .exitedEarly, .notReady, .leaderPlacementFailed, .stopFailed:
            return false
        }
    }

    /// Parses the options of a subcommand; `--help` prints the usage.
    private static func parse(_ arguments: [String], valued: Set<String>, switches: Set<String> = []) throws -> CommandLineOptions? {
        let options = try CommandLineOptions(arguments, valued: valued.union(["dir"]), switches: switches.union(["help"]))
        if options.has("help") {
            print(usage)
            return nil
        }
        try options.rejectPositional()
        return options
    }

    private static func directory(_ options: CommandLineOptions) throws -> String {
        guard let directory = options.string("dir"), !directory.isEmpty else {
            throw CommandLineOptions.UsageError(description: "--dir DIR is required")
        }
        return directory
    }

    /// Attaches to the cluster in `--dir`, which must exist.
    private static func attach(_ options: CommandLineOptions, logger: Logger? = nil) throws -> LocalCluster {
        let directory = try directory(options)
        guard FileManager.default.fileExists(atPath: directory) else {
            throw CommandLineOptions.UsageError(
                description: "--dir \(directory) does not exist; start a cluster there with `homeport cluster up --dir \(directory)`")
        }
        return try LocalCluster.attach(directory: directory, logger: logger)
    }

    private static var logger: Logger {
        Logger(label: "homeport.cluster", sink: LogSink(minimumLevel: .info))
    }

    // MARK: up

    private static func up(_ arguments: [String]) async throws -> Int32 {
        guard
            let options = try parse(
                arguments,
                valued: ["topology", "policy", "leader", "lease-ttl-ms", "heartbeat-ms", "election-timeout-ms", "log-level"],
                switches: ["no-appendonly"])
        else { return 0 }
        let directory = try directory(options)

        var topology = RegionTopology.threeRegionDefault()
        if let path = options.string("topology") {
            do {
                topology = try TopologyFile.load(path: path)
            } catch {
                throw CommandLineOptions.UsageError(description: "\(error)")
            }
        }
        var configuration = LocalCluster.Configuration(topology: topology, executablePath: try executablePath(), directory: directory)
        configuration.policyPath = options.string("policy")
        if let leader = options.string("leader") {
            guard topology.regionNames.contains(leader) else {
                throw CommandLineOptions.UsageError(
                    description: "--leader \(leader) is not a region; the regions are \(topology.regionNames.joined(separator: ", "))")
            }
            configuration.leaderRegion = leader
        }
        configuration.leaseTTLMilliseconds = try options.integer("lease-ttl-ms", in: 2000...600_000) ?? configuration.leaseTTLMilliseconds
        configuration.etcdHeartbeatMilliseconds =
            try options.integer("heartbeat-ms", in: 1...10_000) ?? configuration.etcdHeartbeatMilliseconds
        configuration.etcdElectionTimeoutMilliseconds =
            try options.integer("election-timeout-ms", in: 5...50_000) ?? configuration.etcdElectionTimeoutMilliseconds
        configuration.redisAppendOnly = !options.has("no-appendonly")
        configuration.serverLogLevel = options.string("log-level") ?? configuration.serverLogLevel

        let cluster = try await LocalCluster.start(configuration, logger: logger)
        print("Cluster running in \(cluster.directory)")
        print(await describe(cluster))
        print(
            "Replay through it with `homeport cluster replay --dir \(cluster.directory)`; stop it with `homeport cluster down --dir \(cluster.directory)`."
        )
        return 0
    }

    /// Returns the path of this executable, which the cluster runs for `serve` and `proxy`.
    private static func executablePath() throws -> String {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            return path
        }
        guard let path = Bundle.main.executablePath else {
            throw LocalClusterError(.invalidConfiguration, "cannot find the path of this homeport executable")
        }
        return path
    }

    /// Renders the regions' addresses, the peer delays and the etcd leader as a table.
    private static func describe(_ cluster: LocalCluster) async -> String {
        let leader = await cluster.leader
        var lines = [pad(["region", "serve", "etcd client", "redis", "peer delay"])]
        for region in cluster.regions {
            lines.append(
                pad([
                    region, cluster.baseURLs[region] ?? "-", cluster.etcdClientEndpoints[region]?.description ?? "-",
                    cluster.redisPorts[region].map { "127.0.0.1:\($0)" } ?? "-",
                    "\(cluster.peerDelays.oneWay[region]?.wholeMilliseconds ?? 0) ms",
                ]))
        }
        let current = (try? await cluster.currentLeader()) ?? "unknown (etcd did not respond)"
        lines.append("etcd leader: \(current)" + (current == leader ? "" : " (placed at start: \(leader))"))
        if let model = try? ConsensusLatencyModel(topology: cluster.topology, leader: current) {
            let delays = cluster.regions.map { "\($0) \(model.delay(from: $0).wholeMilliseconds) ms" }.joined(separator: ", ")
            lines.append("modelled consensus round trip entering at each region: \(delays)")
        }
        return lines.joined(separator: "\n")
    }

    private static func pad(_ cells: [String]) -> String {
        let widths = [10, 26, 18, 18, 10]
        return zip(cells, widths).map { $0.padding(toLength: max($1, $0.count + 1), withPad: " ", startingAt: 0) }.joined()
            .trimmingCharacters(in: .whitespaces)
    }

    // MARK: down and status

    private static func down(_ arguments: [String]) async throws -> Int32 {
        guard let options = try parse(arguments, valued: []) else { return 0 }
        let cluster = try attach(options, logger: logger)
        let count = await cluster.processes.filter(\.isRunning).count
        try await cluster.stop()
        print("Stopped \(count) running processes and removed \(cluster.directory)")
        return 0
    }

    private static func status(_ arguments: [String]) async throws -> Int32 {
        guard let options = try parse(arguments, valued: []) else { return 0 }
        let cluster = try attach(options)
        let processes = await cluster.processes

        print("Cluster in \(cluster.directory)")
        print(await describe(cluster))
        print("")
        for process in processes {
            let ports = process.ports.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            let state = process.isRunning ? "running" : "not running"
            print(
                "\(process.name.padding(toLength: 20, withPad: " ", startingAt: 0)) pid \(process.pid)  \(state)  ports: \(ports)  log: \(process.logPath)"
            )
        }
        let stopped = processes.filter { !$0.isRunning }
        if !stopped.isEmpty {
            print(
                "\n\(stopped.count) of \(processes.count) processes are not running: \(stopped.map(\.name).joined(separator: ", ")). Read their logs, or run `homeport cluster down --dir \(cluster.directory)` and start again."
            )
            return 1
        }
        return 0
    }

    // MARK: replay

    private static func replay(_ arguments: [String]) async throws -> Int32 {
        guard
            let options = try parse(
                arguments,
                valued: ["trace", "limit", "speed", "roaming", "tool-calls", "seed", "kill-region", "kill-at", "restart-at"],
                switches: ["cross-session"])
        else { return 0 }

        var configuration = ReplayConfiguration()
        configuration.timeCompression = try options.number("speed", in: 0.001...1_000_000) ?? configuration.timeCompression
        configuration.roamingShare = try options.number("roaming", in: 0...1) ?? configuration.roamingShare
        configuration.toolCallShare = try options.number("tool-calls", in: 0...1) ?? configuration.toolCallShare
        if let seed = options.string("seed") {
            guard let value = UInt64(seed) else {
                throw CommandLineOptions.UsageError(description: "--seed must be a non-negative whole number, got \"\(seed)\"")
            }
            configuration.seed = value
        }
        configuration.crossSessionState = options.has("cross-session")
        let limit = try options.integer("limit", in: 1...10_000_000)

        let cluster = try attach(options)
        if let region = options.string("kill-region") {
            guard cluster.regions.contains(region) else {
                throw CommandLineOptions.UsageError(
                    description: "--kill-region \(region) is not a region of the cluster; it has \(cluster.regions.joined(separator: ", "))"
                )
            }
            configuration.failure = ReplayConfiguration.RegionFailure(
                region: region, downAt: try options.number("kill-at", in: 0...1) ?? 0.4,
                upAt: try options.number("restart-at", in: 0...1) ?? 0.7)
            // Requests to the killed region are retried until its neighbour
            // takes it over, which takes about a lease TTL.
            configuration.maximumAttempts = 12
        } else {
            for flag in ["kill-at", "restart-at"] where options.string(flag) != nil {
                throw CommandLineOptions.UsageError(description: "--\(flag) needs --kill-region REGION")
            }
        }
        do {
            try configuration.validate()
        } catch {
            throw CommandLineOptions.UsageError(description: error.detail)
        }

        let notRunning = await cluster.processes.filter { !$0.isRunning }
        guard notRunning.isEmpty else {
            printError(
                "homeport cluster replay: \(notRunning.map(\.name).joined(separator: ", ")) not running in \(cluster.directory); run `homeport cluster status --dir \(cluster.directory)`"
            )
            return 1
        }

        let (trace, source) = try loadTrace(path: options.string("trace"), limit: limit)
        let sessions = SessionRebuilder.rebuild(trace)
        print(
            "Replaying \(trace.requests.count) requests in \(sessions.sessions.count) sessions (\(sessions.followUpCount) follow-up turns) from \(source) through \(cluster.directory)"
        )

        let failedRegion = configuration.failure?.region
        var reconcilesBefore = 0
        if let failedRegion {
            reconcilesBefore = await cluster.reconcileReports(of: failedRegion).count
        }
        let injectionErrors = Mutex<[String]>([])
        let replay = TraceReplay(
            trace: trace, sessions: sessions, regions: cluster.regions, baseURLs: cluster.baseURLs, configuration: configuration,
            faultInjector: { action in
                do {
                    switch action {
                    case .crash(let region):
                        try await cluster.killServer(region)
                    case .restart(let region):
                        try await cluster.restartServer(region)
                    }
                } catch {
                    injectionErrors.withLock { $0.append("\(action): \(error)") }
                }
            })
        var outcome = await replay.run()
        if let failedRegion {
            // The serve process kept its sessions in Redis, which kept running.
            outcome.failover?.durable = true
            outcome.failover?.reconcile = await cluster.reconcileReports(of: failedRegion).dropFirst(reconcilesBefore).last
        }

        let report = ReplayReport(
            source: source, outcome: outcome, configuration: configuration, latency: cluster.topology.latency, regions: cluster.regions)
        print(report.renderText())
        if let failedRegion {
            print(
                "The killed server of \(failedRegion) kept its sessions in its region's Redis, which kept running: that is the session log the failover lines refer to.\n"
            )
        }

        var failures: [String] = injectionErrors.withLock { $0 }
        if report.errorCount > 0 { failures.append("\(report.errorCount) calls failed") }
        if outcome.sessionsMismatched > 0 { failures.append("\(outcome.sessionsMismatched) sessions do not hold what was acknowledged") }
        if outcome.lostAcknowledgedTurns > 0 { failures.append("\(outcome.lostAcknowledgedTurns) acknowledged turns were lost") }
        guard failures.isEmpty else {
            printError("homeport cluster replay: " + failures.joined(separator: "; "))
            return 1
        }
        return 0
    }

    private static func loadTrace(path: String?, limit: Int?) throws -> (ConversationTrace, String) {
        let path = path ?? ProcessInfo.processInfo.environment["HOMEPORT_TRACE"] ?? DemoCommand.defaultTracePath
        let trace: ConversationTrace
        do {
            trace = try ConversationTrace.load(path: path)
        } catch {
            guard error.code == .fileNotFound else { throw error }
            throw CommandLineOptions.UsageError(
                description:
                    "\(error)\nThe trace is conversation_trace.jsonl from the Mooncake project (kvcache-ai/Mooncake on GitHub, folder FAST25-release/traces/); pass its path with --trace PATH or set HOMEPORT_TRACE."
            )
        }
        guard let limit, limit < trace.requests.count else { return (trace, path) }
        return (ConversationTrace(requests: Array(trace.requests.prefix(limit))), "\(path) (first \(limit) requests)")
    }
}
