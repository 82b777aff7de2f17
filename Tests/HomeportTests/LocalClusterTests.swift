import Foundation
import Synchronization
import Testing

@testable import Homeport

/// The local cluster, whose regions each run a redis-server, an etcd member
/// behind a delay proxy and a `homeport serve` process on loopback. Also the
/// peer delay solve, and how the `homeport cluster` command handles bad
/// input.
@Suite(.serialized, .timeLimit(.minutes(3))) struct LocalClusterTests {
    // MARK: Peer delays

    @Test func peerDelaysOfDefaultTopology() throws {
        let delays = try EtcdPeerDelays.solve(.threeRegionDefault())

        #expect(delays.oneWay["us-east"] == .milliseconds(16))
        #expect(delays.oneWay["us-west"] == .milliseconds(72))
        #expect(delays.oneWay["eu-west"] == .milliseconds(64))
    }

    @Test func peerDelaysReproduceEveryRoundTrip() throws {
        let topology = try RegionTopology(
            regions: [RegionEndpoint(name: "a"), RegionEndpoint(name: "b"), RegionEndpoint(name: "c")],
            latency: LatencyMatrix(
                oneWay: [
                    RegionPair("a", "b"): .milliseconds(30), RegionPair("a", "c"): .milliseconds(75),
                    RegionPair("b", "c"): .milliseconds(50),
                ], jitterFraction: 0.1))
        let delays = try EtcdPeerDelays.solve(topology)

        for (first, second) in [("a", "b"), ("a", "c"), ("b", "c")] {
            #expect(delays.roundTrip(first, second) == topology.latency.nominalDelay(from: first, to: second) * 2, "\(first)-\(second)")
        }
        #expect(delays.roundTrip("a", "a") == .zero)
    }

    @Test func peerDelaysNeedThreeRegions() throws {
        let twoRegions = try RegionTopology(
            regions: [RegionEndpoint(name: "a"), RegionEndpoint(name: "b")],
            latency: LatencyMatrix(oneWay: [RegionPair("a", "b"): .milliseconds(10)], jitterFraction: 0))

        let error = #expect(throws: ConfigurationError.self) { try EtcdPeerDelays.solve(twoRegions) }
        #expect(error?.detail.contains("exactly three regions") == true)
    }

    @Test func peerDelaysRejectBrokenTriangle() throws {
        // b-c is longer than b-a-c, which no delay per member can model.
        let topology = try RegionTopology(
            regions: [RegionEndpoint(name: "a"), RegionEndpoint(name: "b"), RegionEndpoint(name: "c")],
            latency: LatencyMatrix(
                oneWay: [
                    RegionPair("a", "b"): .milliseconds(10), RegionPair("a", "c"): .milliseconds(10),
                    RegionPair("b", "c"): .milliseconds(50),
                ], jitterFraction: 0))

        let error = #expect(throws: ConfigurationError.self) { try EtcdPeerDelays.solve(topology) }
        #expect(error?.detail.contains("b↔c") == true)
    }

    // MARK: Configuration and layout

    @Test func configurationRejectsBadTimings() throws {
        var configuration = try Self.configuration(directory: Self.temporaryDirectory())
        configuration.etcdElectionTimeoutMilliseconds = 500
        #expect(throws: LocalClusterError.self) { try configuration.validate() }

        configuration.etcdHeartbeatMilliseconds = 20
        configuration.etcdElectionTimeoutMilliseconds = 200
        // Longer than 5 heartbeats, but not twice the 136 ms largest round trip.
        let error = #expect(throws: LocalClusterError.self) { try configuration.validate() }
        #expect(error?.detail.contains("twice the largest round trip") == true)

        configuration.etcdElectionTimeoutMilliseconds = 1500
        configuration.leaseTTLMilliseconds = 1000
        #expect(throws: LocalClusterError.self) { try configuration.validate() }

        configuration.leaseTTLMilliseconds = 2000
        configuration.leaderRegion = "mars"
        #expect(throws: LocalClusterError.self) { try configuration.validate() }

        configuration.leaderRegion = nil
        configuration.etcdExecutablePath = "/nonexistent/etcd"
        let missing = #expect(throws: LocalClusterError.self) { try configuration.validate() }
        #expect(missing?.detail.contains("scripts/setup.sh") == true)
    }

    @Test func layoutBindsLoopbackAndAdvertisesProxies() throws {
        let configuration = try Self.configuration(directory: "/tmp/cluster")
        let layout = try LocalClusterLayout.make(directory: "/tmp/cluster", regions: ["us-east", "us-west", "eu-west"])
        let allPorts = layout.ports.values.flatMap { [$0.redis, $0.etcdClient, $0.etcdPeer, $0.peerProxy, $0.api] }
        #expect(Set(allPorts).count == 15)

        let east = layout.ports["us-east"]!
        let etcd = layout.etcd("us-east", clusterToken: "t", configuration: configuration)
        #expect(Self.value(of: "--listen-peer-urls", in: etcd.arguments) == "http://127.0.0.1:\(east.etcdPeer)")
        #expect(Self.value(of: "--initial-advertise-peer-urls", in: etcd.arguments) == "http://127.0.0.1:\(east.peerProxy)")
        #expect(
            Self.value(of: "--initial-cluster", in: etcd.arguments)?.contains(
                "us-west=http://127.0.0.1:\(layout.ports["us-west"]!.peerProxy)") == true)

        let redis = layout.redis("us-east", configuration: configuration)
        #expect(Self.value(of: "--bind", in: redis.arguments) == "127.0.0.1")
        let proxy = layout.peerProxy("us-east", delay: .milliseconds(16), executablePath: "/bin/homeport")
        #expect(Self.value(of: "--listen", in: proxy.arguments) == "127.0.0.1:\(east.peerProxy)")
        #expect(Self.value(of: "--delay-ms", in: proxy.arguments) == "16")

        let server = layout.server("us-east", policyPath: "/a.json", configuration: configuration)
        #expect(Self.value(of: "--etcd", in: server.arguments)?.hasPrefix("127.0.0.1:\(east.etcdClient),") == true)
        let replaced = LocalClusterLayout.replacingPolicy(in: server.arguments, with: "/b.json")
        #expect(Self.value(of: "--policy", in: replaced) == "/b.json")
        #expect(replaced.filter { $0 == "--policy" }.count == 1)
        #expect(!LocalClusterLayout.replacingPolicy(in: server.arguments, with: nil).contains("--policy"))
    }

    // MARK: Live cluster

    /// Starts a cluster, replays 250 requests of the real trace through it,
    /// restarts its servers with a policy file, and stops it.
    @Test func replayThroughClusterThenStop() async throws {
        let directory = Self.temporaryDirectory()
        let cluster = try await Self.start(try Self.configuration(directory: directory))

        try await Self.stopping(cluster) {
            let processes = await cluster.processes
            #expect(processes.count == 12)
            let notRunning = processes.filter { !$0.isRunning }.map(\.name)
            #expect(notRunning.isEmpty, "\(notRunning)")
            #expect(await cluster.leader == "us-east")
            #expect(try await cluster.currentLeader() == "us-east")
            #expect(FileManager.default.fileExists(atPath: LocalClusterState.path(in: directory)))

            let trace = try Self.loadTrace(limit: 250)
            var configuration = ReplayConfiguration()
            configuration.timeCompression = 40
            configuration.roamingShare = 0.2
            configuration.toolCallShare = 0.3
            let outcome = await TraceReplay(
                trace: trace, sessions: SessionRebuilder.rebuild(trace), regions: cluster.regions, baseURLs: cluster.baseURLs,
                configuration: configuration
            ).run()
            #expect(outcome.requestsReplayed == 250)
            #expect(outcome.recorder.errors.isEmpty, "\(outcome.recorder.firstErrors)")
            #expect(outcome.sessionsMismatched == 0)
            #expect(outcome.sessionsVerified == outcome.sessionsReplayed)
            #expect(outcome.roamingRequests > 0)

            try await Self.checkRestartWithPolicy(cluster, directory: directory)

            let every = await cluster.processes + processes.filter { $0.role == .server }
            try await cluster.stop()
            for process in every {
                #expect(!process.isRunning, "\(process.name) pid \(process.pid) still runs")
            }
            #expect(!FileManager.default.fileExists(atPath: directory))
        }
    }

    /// Restarts every server with a policy file, then without, and checks
    /// that a bad file stops nothing.
    static func checkRestartWithPolicy(_ cluster: LocalCluster, directory: String) async throws {
        let policyPath = FileManager.default.temporaryDirectory.appendingPathComponent("homeport-policy-\(UUID().uuidString).json").path
        try PolicyTable.defaultTable.jsonData().write(to: URL(fileURLWithPath: policyPath))
        defer { try? FileManager.default.removeItem(atPath: policyPath) }
        let before = await cluster.processes.filter { $0.role == .server }

        try await cluster.restartServers(policyPath: policyPath)
        let restarted = await cluster.processes.filter { $0.role == .server }
        #expect(await cluster.policyPath == policyPath)
        for server in restarted {
            #expect(server.isRunning)
            #expect(!before.contains { $0.pid == server.pid })
            let commandLine = try String(contentsOfFile: "/proc/\(server.pid)/cmdline", encoding: .utf8)
            #expect(commandLine.contains(policyPath), "\(server.name) runs without the policy: \(commandLine)")
        }

        let badPath = policyPath + ".missing"
        let error = await #expect(throws: LocalClusterError.self) { try await cluster.restartServers(policyPath: badPath) }
        #expect(error?.code == .invalidConfiguration)
        #expect(await cluster.processes.filter { $0.role == .server } == restarted)

        try await cluster.restartServers(policyPath: nil)
        #expect(await cluster.policyPath == nil)
        let servers = await cluster.processes.filter { $0.role == .server }
        #expect(servers.count == 3)
        #expect(servers.allSatisfy { $0.isRunning })
    }

    /// SIGKILLs us-east's server part way through a replay and starts it
    /// again once us-west took it over. Redis keeps the killed server's
    /// sessions, so it reconciles them forward and nothing acknowledged is
    /// lost.
    @Test func killedServerReconcilesWithoutLoss() async throws {
        var configuration = try Self.configuration(directory: Self.temporaryDirectory())
        configuration.leaseTTLMilliseconds = 2000
        let cluster = try await Self.start(configuration)

        try await Self.stopping(cluster) {
            let etcd = try EtcdLinearizableStore(
                configuration: EtcdLinearizableStore.Configuration(
                    endpoints: cluster.regions.compactMap { cluster.etcdClientEndpoints[$0] }))
            let trace = try Self.loadTrace(limit: 300)
            var replay = ReplayConfiguration()
            replay.timeCompression = 10
            replay.roamingShare = 0.2
            replay.toolCallShare = 0.3
            replay.maximumAttempts = 12
            replay.failure = ReplayConfiguration.RegionFailure(region: "us-east", downAt: 0.25, upAt: 0.6)
            let injectionErrors = Mutex<[String]>([])

            let outcome = await TraceReplay(
                trace: trace, sessions: SessionRebuilder.rebuild(trace), regions: cluster.regions, baseURLs: cluster.baseURLs,
                configuration: replay,
                faultInjector: { action in
                    do {
                        switch action {
                        case .crash(let region):
                            try await cluster.killServer(region)
                        case .restart(let region):
                            // Come back only after the neighbour took over, so
                            // that the restart has something to reconcile.
                            try await Self.waitForTakeover(of: region, in: etcd)
                            try await cluster.restartServer(region)
                        }
                    } catch {
                        injectionErrors.withLock { $0.append("\(action): \(error)") }
                    }
                }
            ).run()

            #expect(injectionErrors.withLock { $0 }.isEmpty, "\(injectionErrors.withLock { $0 })")
            #expect(outcome.lostAcknowledgedTurns == 0)
            #expect(outcome.sessionsMismatched == 0)
            #expect(outcome.sessionsVerified == outcome.sessionsReplayed)
            #expect(outcome.recorder.errors.isEmpty, "\(outcome.recorder.firstErrors)")
            #expect((outcome.failover?.sessionsRehomed ?? 0) > 0)
            let reconciles = await cluster.reconcileReports(of: "us-east")
            #expect(reconciles.count == 1)
            #expect(reconciles.first?.to == "us-west")
            #expect((reconciles.first?.sessions ?? 0) > 0)
            let stopped = await cluster.processes.filter { !$0.isRunning }.map(\.name)
            #expect(stopped.isEmpty, "\(stopped)")
        }
    }

    /// Waits until a takeover record for `region` is in etcd.
    static func waitForTakeover(of region: String, in etcd: EtcdLinearizableStore) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if try await etcd.get(TakeoverRecord.key(of: region)) != nil { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw LocalClusterError(.notReady, "no takeover of \(region) within 20 s")
    }

    // MARK: Command line

    @Test func clusterCommandRejectsBadInput() throws {
        let existing = Self.temporaryDirectory()
        try FileManager.default.createDirectory(atPath: existing, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: existing + "/other-file"))
        let file = try CommandLineTests.temporaryFile("{}")
        let twoRegions = try CommandLineTests.temporaryFile(
            #"""
            {"regions": [{"name": "a"}, {"name": "b"}],
             "latency": {"oneWayMilliseconds": [{"between": ["a", "b"], "milliseconds": 10}]}}
            """#)
        defer {
            for path in [existing, file, twoRegions] { try? FileManager.default.removeItem(atPath: path) }
        }
        let fresh = Self.temporaryDirectory()

        let cases: [(arguments: [String], message: String)] = [
            (["cluster"], "a command is required"),
            (["cluster", "start", "--dir", fresh], "unknown command \"start\""),
            (["cluster", "up"], "--dir DIR is required"),
            (["cluster", "down"], "--dir DIR is required"),
            (["cluster", "up", "--dir", fresh, "--bogus"], "unknown option --bogus"),
            (["cluster", "up", "--dir", fresh, "extra"], "unexpected argument \"extra\""),
            (["cluster", "up", "--dir", fresh, "--leader", "mars"], "--leader mars is not a region"),
            (["cluster", "up", "--dir", fresh, "--lease-ttl-ms", "100"], "--lease-ttl-ms must be a whole number from 2000"),
            (["cluster", "up", "--dir", fresh, "--election-timeout-ms", "600"], "at least 5 heartbeat intervals"),
            (["cluster", "up", "--dir", fresh, "--topology", twoRegions], "exactly three regions"),
            (["cluster", "up", "--dir", fresh, "--policy", "/nonexistent/policy.json"], "/nonexistent/policy.json"),
            (["cluster", "up", "--dir", file], "is a file"),
            (["cluster", "up", "--dir", existing], "is not empty"),
            (["cluster", "down", "--dir", fresh], "does not exist"),
            (["cluster", "status", "--dir", fresh], "does not exist"),
            (["cluster", "replay", "--dir", existing], "holds no local cluster"),
            (["cluster", "replay", "--dir", fresh, "--speed", "0"], "--speed must be a number"),
        ]
        for (arguments, message) in cases {
            let result = try CommandLineTests.run(arguments)
            #expect(result.status == 2, "\(arguments): \(result.error)")
            #expect(result.error.contains(message), "\(arguments): expected \"\(message)\" in: \(result.error)")
        }
        #expect(!FileManager.default.fileExists(atPath: fresh))
        #expect(try FileManager.default.contentsOfDirectory(atPath: existing) == ["other-file"])
    }

    /// A directory whose state file names a running process (this test's
    /// own) counts as a running cluster. Nothing here may stop it.
    @Test func clusterCommandRefusesRunningDirectory() throws {
        let directory = Self.temporaryDirectory()
        let layout = try LocalClusterLayout.make(directory: directory, regions: ["us-east", "us-west", "eu-west"])
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Data(TopologyFile.serialize(try layout.topology(from: .threeRegionDefault())).serializedBytes())
            .write(to: URL(fileURLWithPath: layout.topologyPath))
        let pid = getpid()
        var state = LocalClusterState(
            regions: layout.regions, topologyPath: layout.topologyPath, keysPath: layout.keysPath, policyPath: nil,
            leaseTTLMilliseconds: 5000, etcdHeartbeatMilliseconds: 150, etcdElectionTimeoutMilliseconds: 1500,
            peerDelayMilliseconds: [:], leader: "us-east", readinessTimeoutMilliseconds: 1000, stopGracePeriodMilliseconds: 1000)
        state.record(
            LocalClusterProcess(
                role: .server, region: "us-east", pid: pid, startTime: try #require(ProcessControl.startTime(of: pid)),
                ports: ["api": layout.ports["us-east"]!.api], logPath: directory + "/server.log", executablePath: "/bin/true",
                arguments: []))
        try state.save(directory: directory)

        let up = try CommandLineTests.run(["cluster", "up", "--dir", directory])
        #expect(up.status == 2)
        #expect(up.error.contains("a cluster already runs in \(directory)"), "\(up.error)")
        #expect(up.error.contains("server us-east pid \(pid)"), "\(up.error)")

        let replay = try CommandLineTests.run(["cluster", "replay", "--dir", directory, "--kill-region", "mars"])
        #expect(replay.status == 2)
        #expect(replay.error.contains("--kill-region mars is not a region"), "\(replay.error)")

        let orphanOption = try CommandLineTests.run(["cluster", "replay", "--dir", directory, "--kill-at", "0.5"])
        #expect(orphanOption.status == 2)
        #expect(orphanOption.error.contains("--kill-at needs --kill-region"), "\(orphanOption.error)")
    }

    // MARK: Helpers

    static func temporaryDirectory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("homeport-cluster-\(UUID().uuidString)").path
    }

    static func configuration(directory: String) throws -> LocalCluster.Configuration {
        LocalCluster.Configuration(
            topology: .threeRegionDefault(), executablePath: try CommandLineTests.executable().path, directory: directory)
    }

    /// Starts a cluster; a failed start leaves its directory with the logs,
    /// which this removes after stopping whatever is left.
    static func start(_ configuration: LocalCluster.Configuration) async throws -> LocalCluster {
        do {
            return try await LocalCluster.start(configuration)
        } catch {
            if let leftover = try? LocalCluster.attach(directory: configuration.directory) {
                try? await leftover.stop()
            }
            try? FileManager.default.removeItem(atPath: configuration.directory)
            throw error
        }
    }

    /// Runs `body`, then stops the cluster whether or not it threw.
    static func stopping(_ cluster: LocalCluster, _ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch {
            try? await cluster.stop()
            throw error
        }
        try await cluster.stop()
    }

    static func value(of option: String, in arguments: [String]) -> String? {
        guard let index = arguments.firstIndex(of: option), index + 1 < arguments.count else { return nil }
        return arguments[index + 1]
    }

    /// Loads the first `limit` requests of the Mooncake trace from
    /// `HOMEPORT_TRACE` or `../shared/data/mooncake/conversation_trace.jsonl`
    /// beside the package root.
    static func loadTrace(limit: Int) throws -> ConversationTrace {
        var path = ProcessInfo.processInfo.environment["HOMEPORT_TRACE"] ?? ""
        if path.isEmpty {
            path = CommandLineTests.packageRoot.appendingPathComponent("../shared/data/mooncake/conversation_trace.jsonl").standardized.path
        }
        try #require(
            FileManager.default.fileExists(atPath: path),
            "Mooncake conversation trace not found at \(path). Set HOMEPORT_TRACE to the path of conversation_trace.jsonl.")
        let trace = try ConversationTrace.load(path: path)
        return ConversationTrace(requests: Array(trace.requests.prefix(limit)))
    }
}
