import Foundation
import Homeport
import Synchronization

/// `homeport demo`: three regions in this process on the embedded default,
/// the Mooncake trace replayed through them, and the latency report.
enum DemoCommand {
    static let defaultTracePath = "../shared/data/mooncake/conversation_trace.jsonl"

    static let usage = """
        usage: homeport demo [options]

        Starts every region of the topology in this process (memory stores with
        session logs in a data dir, loopback listeners on ephemeral ports, the
        latency matrix applied to every call between regions), replays the
        conversation trace through the HTTP API, crashes the first region at 40%
        of the replay and restarts it at 70%, and prints per-operation latency,
        replication lag and the failover report. Exits 1 if any call failed, a
        session does not hold what was acknowledged, or (with a data dir) an
        acknowledged turn was lost.

        options:
          --trace PATH          Mooncake conversation trace (JSONL); default
                                $HOMEPORT_TRACE or \(defaultTracePath)
          --workload KIND       trace (default) or synthetic: a generated trace with
                                the published statistics of the Mooncake trace
          --limit N             replay only the first N requests of the trace
          --speed X             time compression: trace time is divided by X (default 30,
                                which plays the 59-minute trace in about 2 minutes)
          --roaming SHARE       share of follow-up requests entering at another region
                                (0 to 1, default 0.05)
          --tool-calls SHARE    share of requests that write a tool call (0 to 1, default 0.1)
          --seed N              seed of every random choice (default 42)
          --topology FILE       regions and latency matrix (JSON); default: us-east,
                                us-west, eu-west with 44/40/68 ms one-way and 10% jitter
          --latency-scale X     multiply every delay of the matrix by X (0 removes them)
          --batch-entries N     replication batch size: at most N entries (default 256)
          --batch-delay-ms T    replication batch age: a batch leaves once its oldest entry
                                is T ms old (default 50)
          --fail-region NAME    the region to crash part way through the replay and bring back
                                later (default: the first region); its neighbour takes it over,
                                and it reconciles forward when it returns
          --fail-at SHARE       when the region fails, as a share of the replay (default 0.4)
          --recover-at SHARE    when it comes back (default 0.7)
          --no-failure          replay without crashing a region
          --data-dir DIR        keep each region's session log in DIR (default: a fresh temporary
                                directory, removed at the end)
          --no-data-dir         keep sessions in memory only: a crash loses what was not yet
                                replicated, and the report states that recovery point
          --quota-limit N       the tenant's token quota for the replay (default 200000000,
                                about twice what the full trace uses)
          --no-cross-session    skip the quota reservations, billing records and router-weight
                                reads that every request makes by default
          --policy FILE         policy table (JSON); default: the built-in table
          --report PATH         where to write the JSON report (default demo-report.json)
          --log-level LEVEL     debug, info, warning or error (default warning)
        """

    static func run(_ arguments: [String]) async -> Int32 {
        do {
            let options = try CommandLineOptions(
                arguments,
                valued: [
                    "trace", "workload", "limit", "speed", "roaming", "tool-calls", "seed", "topology", "latency-scale", "policy", "report",
                    "log-level", "batch-entries", "batch-delay-ms", "fail-region", "fail-at", "recover-at", "data-dir", "quota-limit",
                ],
                switches: ["help", "no-failure", "no-data-dir", "no-cross-session"])
            if options.has("help") {
                print(usage)
                return 0
            }
            try options.rejectPositional()
            return try await runDemo(options)
        } catch let error as CommandLineOptions.UsageError {
            printError("homeport demo: \(error)\nRun `homeport demo --help` for the options.")
            return 2
        } catch {
            printError("homeport demo: \(error)")
            return 2
        }
    }

    private static func runDemo(_ options: CommandLineOptions) async throws -> Int32 {
        let logLevelName = options.string("log-level") ?? "warning"
        guard let logLevel = LogLevel(name: logLevelName) else {
            throw CommandLineOptions.UsageError(description: "--log-level must be debug, info, warning or error, got \"\(logLevelName)\"")
        }
        let logger = Logger(label: "homeport.demo", sink: LogSink(minimumLevel: logLevel))

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
        configuration.crossSessionState = !options.has("no-cross-session")
        if let limit = try options.integer("quota-limit", in: 1...1_000_000_000_000_000) {
            configuration.quotaLimit = Int64(limit)
        } else {
            configuration.quotaLimit = 200_000_000
        }
        if options.has("no-failure") {
            for flag in ["fail-region", "fail-at", "recover-at"] where options.string(flag) != nil {
                throw CommandLineOptions.UsageError(description: "--\(flag) contradicts --no-failure; drop one of them")
            }
        }
        if options.has("no-data-dir"), options.string("data-dir") != nil {
            throw CommandLineOptions.UsageError(description: "--data-dir contradicts --no-data-dir; drop one of them")
        }

        // Policy and topology first: a bad file should fail before anything starts.
        let policy = try options.string("policy").map { path throws in try PolicyTable.load(path: path) } ?? .defaultTable
        let diagnostics = policy.validate()
        if diagnostics.contains(where: { $0.severity == .error }) {
            printError("homeport demo: the policy table has errors:\n" + diagnostics.map(\.description).joined(separator: "\n"))
            return 2
        }
        let limits = try SessionStoreLimits(policy: policy)
        var topology = try options.string("topology").map { path throws in try TopologyFile.load(path: path) } ?? .threeRegionDefault()
        if let scale = try options.number("latency-scale", in: 0...100) {
            topology.latency = topology.latency.scaled(by: scale)
        }
        // Every region listens on an ephemeral loopback port in this process.
        topology.regions = topology.regions.map { RegionEndpoint(name: $0.name, host: "127.0.0.1", port: 0) }

        if !options.has("no-failure") {
            let region = options.string("fail-region") ?? topology.regionNames[0]
            guard topology.endpoint(region) != nil else {
                throw CommandLineOptions.UsageError(
                    description: "--fail-region \(region) is not a region; the regions are \(topology.regionNames.joined(separator: ", "))")
            }
            configuration.failure = ReplayConfiguration.RegionFailure(
                region: region, downAt: try options.number("fail-at", in: 0...1) ?? 0.4,
                upAt: try options.number("recover-at", in: 0...1) ?? 0.7)
        }
        try configuration.validate()
        let dataDirectory = try prepareDataDirectory(options)
        defer {
            if dataDirectory?.temporary == true, let path = dataDirectory?.path { try? FileManager.default.removeItem(atPath: path) }
        }
        let (trace, source) = try loadWorkload(options, seed: configuration.seed)
        let sessions = SessionRebuilder.rebuild(trace)

        print(policy.render(storeName: "memory store", linearizableStoreName: "embedded linearizable store"))
        print(buildScopeNote)
        print("")
        print("Regions: \(topology.regionNames.joined(separator: ", ")); one-way delays: " + describe(topology.latency))
        print(
            "Replaying \(trace.requests.count) requests in \(sessions.sessions.count) sessions (\(sessions.followUpCount) follow-up turns) from \(source)"
        )
        print("")

        var replication = ReplicationOutbox.Configuration()
        replication.maximumBatchEntries = try options.integer("batch-entries", in: 1...100_000) ?? replication.maximumBatchEntries
        if let delay = try options.integer("batch-delay-ms", in: 1...60_000) {
            replication.maximumBatchDelayMilliseconds = Int64(delay)
        }
        let cluster = try EmbeddedCluster(
            topology: topology, limits: limits, keyRing: try TokenKeyRing.generated(), logger: logger, replication: replication,
            dataDirectory: dataDirectory?.path)
        try await cluster.start()
        var baseURLs: [String: String] = [:]
        for region in topology.regionNames {
            baseURLs[region] = cluster.baseURL(of: region)
        }

        // The crash's recovery point and the outage's wall-clock window, for the report.
        let outage = Mutex<(pending: Int, downAt: Int64?, upAt: Int64?)>((0, nil, nil))
        let clock = SystemClock()
        let replay = TraceReplay(
            trace: trace, sessions: sessions, regions: topology.regionNames, baseURLs: baseURLs, configuration: configuration,
            faultInjector: { action in
                switch action {
                case .crash(let region):
                    let downAt = clock.nowMilliseconds()
                    let pending = await cluster.crash(region)
                    outage.withLock { $0 = (pending, downAt, nil) }
                case .restart(let region):
                    do {
                        try await cluster.restart(region)
                    } catch {
                        logger.error("region restart failed", ["region": region, "error": "\(error)"])
                    }
                    let upAt = clock.nowMilliseconds()
                    outage.withLock { $0.upAt = upAt }
                }
            })
        var outcome = await replay.run()

        let window = outage.withLock { $0 }
        var excluded: ReplicationReport.Outage?
        if let failure = configuration.failure, let downAt = window.downAt {
            // Entries written just before the crash and just after the restart
            // wait for the region too (backoff, then a snapshot to refill its standby).
            excluded = ReplicationReport.Outage(
                region: failure.region, window: (downAt - 1000)...((window.upAt ?? clock.nowMilliseconds()) + 5000))
            outcome.failover?.durable = dataDirectory != nil
            outcome.failover?.recoveryPointEntries = window.pending
            outcome.failover?.reconcile = cluster.node(failure.region)?.completedReconciles.last
        }
        let replicationReport = ReplicationReport(cluster: cluster, configuration: replication, outage: excluded)
        await cluster.shutdown()

        let report = ReplayReport(
            source: source, outcome: outcome, configuration: configuration, latency: topology.latency, regions: topology.regionNames)
        print(report.renderText())
        print(replicationReport.renderText())

        let reportPath = options.string("report") ?? "demo-report.json"
        do {
            var json = report.json()
            if case .object(var fields) = json {
                fields["replication"] = replicationReport.json()
                json = .object(fields)
            }
            try Data(json.serializedBytes()).write(to: URL(fileURLWithPath: reportPath))
            print("JSON report written to \(reportPath)")
        } catch {
            printError("homeport demo: cannot write the report to \(reportPath): \(error.localizedDescription)")
            return 1
        }
        let lostWithDataDirectory = dataDirectory != nil && outcome.lostAcknowledgedTurns > 0
        if lostWithDataDirectory {
            printError(
                "homeport demo: \(outcome.lostAcknowledgedTurns) acknowledged turns were lost although every region kept a session log")
        }
        return report.errorCount == 0 && outcome.sessionsMismatched == 0 && !lostWithDataDirectory ? 0 : 1
    }

    /// Returns the data directory to use and whether the demo created it,
    /// or nil with `--no-data-dir`.
    private static func prepareDataDirectory(_ options: CommandLineOptions) throws -> (path: String, temporary: Bool)? {
        if options.has("no-data-dir") { return nil }
        if let path = options.string("data-dir") {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw CommandLineOptions.UsageError(description: "--data-dir \(path) is not an existing directory; create it first")
            }
            return (path, false)
        }
        let path = NSTemporaryDirectory() + "homeport-demo-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return (path, true)
    }

    static func loadWorkload(_ options: CommandLineOptions, seed: UInt64) throws -> (ConversationTrace, String) {
        let limit = try options.integer("limit", in: 1...10_000_000)
        switch options.string("workload") ?? "trace" {
        case "synthetic":
            // A shorter workload keeps the trace's request rate, not its 59 minutes.
            let count = limit ?? 12_031
            let trace = SyntheticWorkload.generate(
                seed: seed, requestCount: count, durationMilliseconds: max(1000, 3_540_000 * count / 12_031))
            return (trace, "a synthetic workload (seed \(seed)) with the Mooncake trace's published statistics")
        case "trace":
            let path = options.string("trace") ?? ProcessInfo.processInfo.environment["HOMEPORT_TRACE"] ?? defaultTracePath
            let trace: ConversationTrace
            do {
                trace = try ConversationTrace.load(path: path)
            } catch {
                guard error.code == .fileNotFound else { throw error }
                throw CommandLineOptions.UsageError(
                    description: """
                        \(error)
                        The trace is conversation_trace.jsonl from the Mooncake project (kvcache-ai/Mooncake on GitHub,
                        folder FAST25-release/traces/, Apache-2.0). Pass its path with --trace PATH, or run
                        `homeport demo --workload synthetic` for a generated workload with the same published statistics.
                        """)
            }
            guard let limit, limit < trace.requests.count else { return (trace, path) }
            return (ConversationTrace(requests: Array(trace.requests.prefix(limit))), "\(path) (first \(limit) requests)")
        case let other:
            throw CommandLineOptions.UsageError(description: "--workload must be trace or synthetic, got \"\(other)\"")
        }
    }

    static func describe(_ latency: LatencyMatrix) -> String {
        let pairs = latency.oneWay.sorted { ($0.key.first, $0.key.second) < ($1.key.first, $1.key.second) }
        let text = pairs.map { "\($0.key.first)-\($0.key.second) \($0.value.wholeMilliseconds) ms" }.joined(separator: ", ")
        return (text.isEmpty ? "none" : text) + ", jitter ±\(Int(latency.jitterFraction * 100))%"
    }
}
