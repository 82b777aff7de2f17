import Foundation
import Homeport

/// `homeport bench`: replays the trace in the default design and with every
/// session kind behind consensus, and compares the latencies.
enum BenchCommand {
    static let usage = """
        usage: homeport bench [options]

        Replays a prefix of the conversation trace twice per roaming share on the
        same latency matrix: once with the default policy table (sessions at their
        home region, forwarded from elsewhere) and once with every session kind
        linearizable (each session operation a consensus operation that any region
        serves). Prints count, p50, p95, p99 and p99.9 per operation and entry path
        (home entry, roaming entry) with the all-linearizable/default ratio, the
        headline ratios and the roaming sweep, and writes results.json,
        summary.csv and samples.csv. Exits 1 if any call failed or an
        acknowledged write was lost.

        On the embedded target, the three regions run in this process and
        consensus latency is modelled from the matrix: a round trip to the leader
        plus the leader's round trip to the nearest majority.

        options:
          --target T            embedded (default), cluster (Redis and a three-member etcd
                                behind delay proxies, separate serve processes; measured), or
                                both
          --trace PATH          Mooncake conversation trace (JSONL); default
                                $HOMEPORT_TRACE or \(DemoCommand.defaultTracePath)
          --limit N             replay the first N requests (default 2000; the whole trace
                                has 12031)
          --speed X             time compression of the trace (default 30)
          --roaming LIST        comma-separated roaming shares to sweep, each 0 to 1
                                (default 0,0.005,0.01,0.02,0.05,0.1)
          --headline SHARE      the share of the headline comparison and of samples.csv
                                (default 0.005; must be in the sweep)
          --leader REGION       the consensus leader's region (default: the first region)
          --topology FILE       regions and latency matrix (JSON); default config/topology.json
                                values built in: 44/40/68 ms one-way, 10% jitter
          --policy FILE         the default mode's policy table; default: the built-in table
          --seed N              seed of every random choice (default 42)
          --output DIR          where to write the result files (default bench-results)
          --log-level LEVEL     debug, info, warning or error (default error)
        """

    static let defaultShares: [Double] = [0, 0.005, 0.01, 0.02, 0.05, 0.1]

    static func run(_ arguments: [String]) async -> Int32 {
        do {
            let options = try CommandLineOptions(
                arguments,
                valued: [
                    "target", "trace", "limit", "speed", "roaming", "headline", "leader", "topology", "policy", "seed", "output",
                    "log-level",
                ],
                switches: ["help"])
            if options.has("help") {
                print(usage)
                return 0
            }
            try options.rejectPositional()
            return try await bench(options)
        } catch let error as CommandLineOptions.UsageError {
            printError("homeport bench: \(error)\nRun `homeport bench --help` for the options.")
            return 2
        } catch {
            printError("homeport bench: \(error)")
            return 2
        }
    }

    private static func bench(_ options: CommandLineOptions) async throws -> Int32 {
        // Regions that start or stop one after another log failed exchanges
        // with each other as warnings, which would bury the report.
        let logLevelName = options.string("log-level") ?? "error"
        guard let logLevel = LogLevel(name: logLevelName) else {
            throw CommandLineOptions.UsageError(description: "--log-level must be debug, info, warning or error, got \"\(logLevelName)\"")
        }
        let logger = Logger(label: "homeport.bench", sink: LogSink(minimumLevel: logLevel))

        let targets: [String]
        switch options.string("target") ?? "embedded" {
        case "embedded": targets = ["embedded"]
        case "cluster": targets = ["cluster"]
        case "both": targets = ["embedded", "cluster"]
        case let other:
            throw CommandLineOptions.UsageError(description: "--target must be embedded, cluster or both, got \"\(other)\"")
        }

        let shares = try roamingShares(options.string("roaming"))
        let headline = try options.number("headline", in: 0...1) ?? 0.005
        guard shares.contains(headline) else {
            throw CommandLineOptions.UsageError(
                description:
                    "--headline \(headline) is not one of the --roaming shares (\(shares.map { "\($0)" }.joined(separator: ","))); add it")
        }

        let policy = try options.string("policy").map { path throws in try PolicyTable.load(path: path) } ?? .defaultTable
        let diagnostics = policy.validate().filter { $0.severity == .error }
        guard diagnostics.isEmpty else {
            throw CommandLineOptions.UsageError(
                description: "the policy table has errors:\n" + diagnostics.map(\.description).joined(separator: "\n"))
        }
        try policy.checkServable()
        try BenchmarkMode.allLinearizable.policy(from: policy).checkServable()

        let topology = try options.string("topology").map { path throws in try TopologyFile.load(path: path) } ?? .threeRegionDefault()
        let leader = options.string("leader") ?? topology.regionNames[0]
        let model = try ConsensusLatencyModel(topology: topology, leader: leader)

        var replay = ReplayConfiguration()
        replay.timeCompression = try options.number("speed", in: 0.01...10_000) ?? 30
        if let seed = options.string("seed") {
            guard let value = UInt64(seed) else {
                throw CommandLineOptions.UsageError(description: "--seed must be a non-negative whole number, got \"\(seed)\"")
            }
            replay.seed = value
        }
        // Fresh reads on both sides: a roaming read may not take the
        // neighbour's standby copy, which the baseline has no equivalent of.
        replay.staleReadsWhenRoaming = false
        replay.crossSessionState = false
        try replay.validate()

        var workloadArguments = ["--limit", options.string("limit") ?? "2000"]
        if let trace = options.string("trace") { workloadArguments += ["--trace", trace] }
        let workloadOptions = try CommandLineOptions(workloadArguments, valued: ["limit", "trace"], switches: [])
        let (trace, source) = try DemoCommand.loadWorkload(workloadOptions, seed: replay.seed)
        let sessions = SessionRebuilder.rebuild(trace)
        let plan = BenchmarkPlan(
            trace: trace, sessions: sessions, regions: topology.regionNames, replay: replay, roamingShares: shares)

        var setup: [(name: String, value: String)] = [
            ("machine", machineDescription()),
            (
                "trace",
                "\(source): \(trace.requests.count) requests in \(sessions.sessions.count) sessions, speed ×\(replay.timeCompression)"
            ),
            ("regions", topology.regionNames.joined(separator: ", ")),
            ("one-way delays", DemoCommand.describe(topology.latency)),
            ("consensus leader", leader),
            (
                "modelled consensus latency",
                topology.regionNames.map { "\($0) \(model.delay(from: $0).wholeMilliseconds) ms" }.joined(separator: ", ")
            ),
            ("roaming shares", shares.map { BenchmarkReport.percent($0) }.joined(separator: ", ")),
        ]
        print("homeport bench: \(targets.joined(separator: " and ")), \(shares.count) roaming shares × 2 modes")
        for (name, value) in setup {
            print("  \(name): \(value)")
        }

        var runs: [BenchmarkRun] = []
        let runner = BenchmarkRunner(plan: plan, logger: logger) { run in
            print(
                "  \(run.target) \(run.mode.rawValue) at \(BenchmarkReport.percent(run.roamingShare)) roaming: \(run.requests) requests in \(String(format: "%.1f", run.wallSeconds)) s, \(run.errors) errors"
            )
            // Progress reaches a log file or pipe as each replay ends.
            fflush(nil)
        }
        for name in targets {
            let target: any BenchmarkTarget
            switch name {
            case "cluster":
                let clusterTarget = try makeClusterTarget(topology: topology, policy: policy, leader: leader, logger: logger)
                setup += clusterTarget.setup
                target = clusterTarget.target
            default:
                target = EmbeddedBenchmarkTarget(topology: topology, policy: policy, model: model, logger: logger)
            }
            runs += try await runner.run(on: target)
        }

        let report = BenchmarkReport(runs: runs, headlineShare: headline, setup: setup)
        print("")
        print(report.renderText())
        let output = options.string("output") ?? "bench-results"
        do {
            try report.write(to: output)
            print("\nResults written to \(output)/results.json, summary.csv and samples.csv")
        } catch {
            printError("homeport bench: cannot write the results to \(output): \(error.localizedDescription)")
            return 1
        }
        return report.failureCount == 0 ? 0 : 1
    }

    /// Parses `--roaming`: comma-separated shares from 0 to 1, sorted.
    static func roamingShares(_ text: String?) throws -> [Double] {
        guard let text else { return defaultShares }
        var shares: [Double] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let share = Double(part.trimmingCharacters(in: .whitespaces)), (0...1).contains(share) else {
                throw CommandLineOptions.UsageError(
                    description: "--roaming must be comma-separated shares from 0 to 1, such as 0,0.005,0.05; \"\(part)\" is not one")
            }
            if !shares.contains(share) { shares.append(share) }
        }
        return shares.sorted()
    }

    private static func machineDescription() -> String {
        let info = ProcessInfo.processInfo
        let memory = Double(info.physicalMemory) / Double(1 << 30)
        return "\(info.activeProcessorCount) cores, \(String(format: "%.0f", memory)) GiB, \(info.operatingSystemVersionString)"
    }
}

extension BenchCommand {
    /// Builds the cluster target: its processes start on the first replay,
    /// in a fresh temporary directory that tear-down removes.
    static func makeClusterTarget(
        topology: RegionTopology, policy: PolicyTable, leader: String, logger: Logger
    ) throws -> (target: ClusterBenchmarkTarget, setup: [(name: String, value: String)]) {
        guard let executable = Bundle.main.executablePath else {
            throw CommandLineOptions.UsageError(description: "cannot find the path of this homeport executable for the serve processes")
        }
        let directory = NSTemporaryDirectory() + "homeport-bench-cluster-\(UUID().uuidString)"
        var configuration = LocalCluster.Configuration(topology: topology, executablePath: executable, directory: directory)
        configuration.leaderRegion = leader
        configuration.serverLogLevel = "warning"
        let delays = try configuration.validate()

        let setup: [(name: String, value: String)] = [
            (
                "cluster",
                "Redis 7 per region, etcd 3.4 with one member per region (heartbeat \(configuration.etcdHeartbeatMilliseconds) ms, election timeout \(configuration.etcdElectionTimeoutMilliseconds) ms), one serve process per region"
            ),
            (
                "etcd peer proxy delays",
                topology.regionNames.map { "\($0) \(delays.oneWay[$0]?.wholeMilliseconds ?? 0) ms" }.joined(separator: ", ")
                    + " (each member's outgoing messages; a round trip is the sum of two)"
            ),
        ]
        return (ClusterBenchmarkTarget(configuration: configuration, policy: policy, logger: logger), setup)
    }
}
