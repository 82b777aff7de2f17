import Foundation
import Testing

@testable import Homeport

@Suite struct ConsensusLatencyModelTests {
    @Test func delaysFollowLeaderAndQuorum() throws {
        let model = try ConsensusLatencyModel(topology: .threeRegionDefault(), leader: "us-east")
        // us-east's nearest follower is eu-west: 2 × 40 ms.
        #expect(model.quorumRoundTrip == .milliseconds(80))
        #expect(model.delay(from: "us-east") == .milliseconds(80))
        #expect(model.delay(from: "us-west") == .milliseconds(88 + 80))
        #expect(model.delay(from: "eu-west") == .milliseconds(80 + 80))
    }

    @Test func leaderElsewhereChangesQuorum() throws {
        let model = try ConsensusLatencyModel(topology: .threeRegionDefault(), leader: "us-west")
        // us-west's nearest follower is us-east: 2 × 44 ms.
        #expect(model.quorumRoundTrip == .milliseconds(88))
        #expect(model.delay(from: "eu-west") == .milliseconds(136 + 88))
    }

    @Test func unknownLeaderIsRejected() {
        #expect(throws: ConfigurationError.self) {
            try ConsensusLatencyModel(topology: .threeRegionDefault(), leader: "ap-south")
        }
    }

    @Test func jitterStaysWithinMatrixBounds() throws {
        let model = try ConsensusLatencyModel(topology: .threeRegionDefault(), leader: "us-east")
        var generator = SplitMix64(seed: 7)
        for _ in 0..<200 {
            let delay = model.sampleDelay(from: "us-west", using: &generator)
            #expect(delay >= .milliseconds(168) * 0.9)
            #expect(delay <= .milliseconds(168) * 1.1)
        }
    }

    @Test func modelledStoreWaitsThenPassesThrough() async throws {
        let topology = RegionTopology.threeRegionDefault()
        let base = EmbeddedLinearizableStore(clock: SystemClock(), logger: Logger(label: "test", sink: LogSink(minimumLevel: .error)))
        let model = try ConsensusLatencyModel(topology: topology, leader: "us-east")
        let store = ModelledLatencyStore(base: base, region: "us-west", model: model, clock: SystemClock())

        let started = ContinuousClock.now
        let revision = try await store.put("/k", value: Array("v".utf8))
        let elapsed = ContinuousClock.now - started

        // Only a lower bound: a slow machine may take longer, never shorter.
        #expect(elapsed >= .milliseconds(168) * 0.9)
        let stored = try base.get("/k")
        #expect(stored?.value == Array("v".utf8))
        #expect(stored?.modRevision == revision)
    }
}

@Suite struct SessionPlacementTests {
    static func table(_ consistency: [String: Consistency]) -> PolicyTable {
        var table = PolicyTable.defaultTable
        for index in table.rows.indices {
            if let value = consistency[table.rows[index].kind] { table.rows[index].consistency = value }
        }
        return table
    }

    @Test func defaultTablePlacesSessionsAtHome() throws {
        #expect(try SessionPlacement(policy: .defaultTable) == .homeRegion)
        try PolicyTable.defaultTable.checkServable()
    }

    @Test func allLinearizableTablePlacesSessionsBehindConsensus() throws {
        let table = BenchmarkMode.allLinearizable.policy(from: .defaultTable)
        #expect(try SessionPlacement(policy: table) == .consensus)
        try table.checkServable()
        #expect(!table.validate().contains { $0.severity == .error })
        for kind in SessionStoreLimits.sessionKinds {
            #expect(table.row(for: kind)?.replication == ReplicationMode.none)
        }
        #expect(BenchmarkMode.defaultPolicy.policy(from: .defaultTable) == .defaultTable)
    }

    @Test func mixedSessionKindsAreRejected() {
        let table = Self.table(["kv_cache_refs": .linearizable])
        #expect {
            try SessionPlacement(policy: table)
        } throws: { error in
            (error as? ConfigurationError)?.field == "policy.kv_cache_refs.consistency"
        }
    }

    @Test func eventuallyGlobalSessionKindIsRejected() {
        let table = Self.table(["session_values": .eventuallyGlobal])
        #expect {
            try SessionPlacement(policy: table)
        } throws: { error in
            (error as? ConfigurationError)?.field == "policy.session_values.consistency"
        }
    }

    @Test func unservableGlobalKindIsRejected() {
        let table = Self.table(["model_router_weights": .linearizable])
        #expect {
            try table.checkServable()
        } throws: { error in
            (error as? ConfigurationError)?.field == "policy.model_router_weights.consistency"
        }
    }
}

@Suite struct BenchmarkReportTests {
    static func run(_ mode: BenchmarkMode, share: Double, home: [Double], roaming: [Double]) -> BenchmarkRun {
        let recorder = LatencyRecorder()
        for value in home {
            recorder.record("read_tail", entry: "us-east", servedBy: "us-east", homeEntry: true, milliseconds: value)
        }
        for value in roaming {
            recorder.record("read_tail", entry: "us-west", servedBy: "us-east", homeEntry: false, milliseconds: value)
        }
        let outcome = ReplayOutcome(
            recorder: recorder, requestsReplayed: home.count + roaming.count, sessionsReplayed: 1, roamingRequests: roaming.count,
            toolCallRequests: 0, wallSeconds: 1, sessionsVerified: 1, sessionsMismatched: 0)
        return BenchmarkRun(target: "embedded", mode: mode, roamingShare: share, outcome: outcome)
    }

    static let report = BenchmarkReport(
        runs: [
            run(.defaultPolicy, share: 0.005, home: Array(repeating: 1, count: 99), roaming: [100]),
            run(.allLinearizable, share: 0.005, home: Array(repeating: 80, count: 99), roaming: [170]),
        ], headlineShare: 0.005, setup: [("machine", "test")])

    @Test func ratiosCompareP99ByEntryPath() throws {
        let home = try #require(Self.report.p99Ratio("embedded", share: 0.005, operation: "read_tail", entry: "home-entry"))
        #expect(home == 80)
        // 100 samples: the p99 is the 99th smallest, a home-entry sample on both sides.
        let all = try #require(Self.report.p99Ratio("embedded", share: 0.005, operation: "read_tail", entry: nil))
        #expect(all == 80)
        #expect(Self.report.p99Ratio("embedded", share: 0.1, operation: "read_tail", entry: nil) == nil)
    }

    @Test func textNamesHeadlineAndSweep() {
        let text = Self.report.renderText()
        #expect(text.contains("home-entry reads at 0.5% roaming: all-linearizable 80.0 ms, default 1.00 ms, ratio 80.0×"))
        #expect(text.contains("roaming sweep"))
    }

    @Test func csvFilesHaveOneRowPerSeries() {
        let summary = Self.report.summaryCSV().split(separator: "\n")
        #expect(summary.first == "target,mode,roaming_share,operation,entry,count,p50_ms,p95_ms,p99_ms,p999_ms,max_ms")
        // Two runs × (home-entry, roaming-entry, all).
        #expect(summary.count == 1 + 6)
        let samples = Self.report.samplesCSV().split(separator: "\n")
        #expect(samples.count == 1 + 200)
        #expect(samples.contains("embedded,all-linearizable,0.005,read_tail,roaming-entry,170.000"))
    }

    @Test func jsonCarriesHeadlineRatios() throws {
        let json = Self.report.json()
        let headline = try #require(json["headlines"]?.arrayValue?.first)
        #expect(headline["homeEntryReadsP99Ratio"] == .number(80))
        #expect(json["replays"]?.arrayValue?.count == 2)
    }
}

@Suite struct LoadGeneratorTests {
    @Test func appendsAgainstNodeWithoutErrors() async throws {
        let cluster = try EmbeddedCluster(
            topology: try RegionTopology(regions: [RegionEndpoint(name: "us-east")], latency: .zero),
            keyRing: try TokenKeyRing.generated(), logger: Logger(label: "test", sink: LogSink(minimumLevel: .error)),
            replication: nil, lease: nil)
        try await cluster.start()
        let port = try #require(cluster.node("us-east")?.port)

        for operation in LoadGenerator.Operation.allCases {
            var configuration = LoadGenerator.Configuration(port: port)
            configuration.connections = 2
            // Long enough for a few operations while other suites load the machine.
            configuration.duration = .seconds(3)
            configuration.warmup = .zero
            configuration.operation = operation
            configuration.turnsPerSession = 5
            let report = await LoadGenerator.run(configuration)
            #expect(report.errors == 0, "\(operation): \(report.firstErrors)")
            #expect(report.operations > 0, "\(operation)")
            #expect(report.sessionsCreated >= 2, "\(operation)")
        }
        await cluster.shutdown()
    }

    @Test func closedPortCountsErrors() async throws {
        let reservation = try LoopbackPortReservation()
        var configuration = LoadGenerator.Configuration(port: reservation.port)
        configuration.connections = 1
        configuration.duration = .milliseconds(200)
        configuration.warmup = .zero
        let report = await LoadGenerator.run(configuration)
        #expect(report.operations == 0)
        #expect(report.errors > 0)
        #expect(report.firstErrors.first?.contains("connect failed") == true)
    }

    @Test func invalidConfigurationNamesField() {
        var configuration = LoadGenerator.Configuration(port: 1)
        configuration.connections = 0
        #expect(throws: ConfigurationError(field: "connections", detail: "0 is outside 1 to 1024")) { try configuration.validate() }
        configuration.connections = 1
        configuration.warmup = .seconds(20)
        #expect {
            try configuration.validate()
        } throws: { error in
            (error as? ConfigurationError)?.field == "warmup"
        }
    }
}

@Suite struct BenchAndLoadCommandLineTests {
    @Test(arguments: [
        (["bench", "--target", "moon"], "--target must be embedded, cluster or both"),
        (["bench", "--roaming", "0,2"], "--roaming must be comma-separated shares from 0 to 1"),
        (["bench", "--roaming", "0,0.1", "--headline", "0.005"], "--headline 0.005 is not one of the --roaming shares"),
        (["bench", "--leader", "ap-south"], "\"ap-south\" is not a region of the topology"),
        (["bench", "--speed", "0"], "--speed"),
        (["load"], "--target HOST:PORT is required"),
        (["load", "--target", "localhost"], "--target localhost is not HOST:PORT"),
        (["load", "--target", "127.0.0.1:1", "--operation", "delete"], "--operation must be append, read or mixed"),
        (["serve", "--topology", "config/topology.json", "--redis", "6379"], "--redis 6379 is not HOST:PORT"),
    ])
    func badInputExitsTwo(arguments: [String], message: String) throws {
        let result = try CommandLineTests.run(arguments)
        #expect(result.status == 2)
        #expect(result.error.contains(message), "stderr: \(result.error)")
    }

    @Test func policyCheckRejectsUnservableRow() throws {
        var table = PolicyTable.defaultTable
        let index = try #require(table.rows.firstIndex { $0.kind == "rate_limit" })
        table.rows[index].consistency = .linearizable
        table.rows[index].replication = .none
        let path = try CommandLineTests.temporaryFile(String(decoding: table.jsonData(), as: UTF8.self))
        let result = try CommandLineTests.run(["policy", "check", path])
        #expect(result.status == 1)
        #expect(result.error.contains("rate_limit is linearizable, but this build serves it only as eventually-global"))
    }
}

@Suite struct EmbeddedBenchmarkTests {
    /// Replays a small synthetic workload in both modes on a matrix scaled to
    /// a tenth, so the run takes seconds.
    @Test func bothModesReplayWithoutErrors() async throws {
        var topology = RegionTopology.threeRegionDefault()
        topology.latency = topology.latency.scaled(by: 0.1)
        let model = try ConsensusLatencyModel(topology: topology, leader: "us-east")
        let trace = SyntheticWorkload.generate(seed: 3, requestCount: 80, durationMilliseconds: 20_000)
        var replay = ReplayConfiguration()
        replay.timeCompression = 20
        replay.staleReadsWhenRoaming = false
        let plan = BenchmarkPlan(
            trace: trace, sessions: SessionRebuilder.rebuild(trace), regions: topology.regionNames, replay: replay,
            roamingShares: [0, 0.5])
        let logger = Logger(label: "test", sink: LogSink(minimumLevel: .error))
        let target = EmbeddedBenchmarkTarget(topology: topology, policy: .defaultTable, model: model, logger: logger)

        let runs = try await BenchmarkRunner(plan: plan, logger: logger).run(on: target)

        #expect(runs.count == 4)
        for run in runs {
            #expect(run.errors == 0, "\(run.mode) at \(run.roamingShare)")
            #expect(run.lostAcknowledgedTurns == 0)
            #expect(run.sessionsMismatched == 0)
            #expect(!run.latencies(of: "read_tail", entry: "home-entry").isEmpty)
        }
        let roaming = try #require(runs.first { $0.mode == .allLinearizable && $0.roamingShare == 0.5 })
        #expect(roaming.roamingRequests > 0)
        #expect(!roaming.latencies(of: "read_tail", entry: "roaming-entry").isEmpty)

        // Every consensus read waits at least the model's smallest delay
        // less jitter; a lower bound only, since a busy machine adds time.
        let fastest = topology.regionNames.map { model.delay(from: $0) }.min()! * 0.9
        let reads = roaming.latencies(of: "read_tail", entry: nil)
        #expect(reads.allSatisfy { $0 >= fastest.secondsValue * 1000 })
    }
}
