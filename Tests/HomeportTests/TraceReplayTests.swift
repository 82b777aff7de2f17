import Foundation
import Testing
@testable import Homeport

@Suite struct TraceReplayTests {
    static func withCluster<Result>(
        latency: LatencyMatrix, _ body: (EmbeddedCluster, RegionTopology) async throws -> Result
    ) async throws -> Result {
        let topology = try RegionTopology(
            regions: [RegionEndpoint(name: "us-east"), RegionEndpoint(name: "us-west"), RegionEndpoint(name: "eu-west")],
            latency: latency)
        let cluster = try EmbeddedCluster(
            topology: topology, keyRing: try TokenKeyRing.generated(), logger: Logger(label: "test", sink: .discarding))
        try await cluster.start()
        do {
            let result = try await body(cluster, topology)
            await cluster.shutdown()
            return result
        } catch {
            await cluster.shutdown()
            throw error
        }
    }

    static func baseURLs(_ cluster: EmbeddedCluster, _ topology: RegionTopology) -> [String: String] {
        Dictionary(uniqueKeysWithValues: topology.regionNames.map { ($0, cluster.baseURL(of: $0)!) })
    }

    @Test func syntheticReplayStoresEveryTurn() async throws {
        let trace = SyntheticWorkload.generate(seed: 3, requestCount: 300, durationMilliseconds: 60_000)
        let sessions = SessionRebuilder.rebuild(trace)
        var configuration = ReplayConfiguration()
        configuration.timeCompression = 600
        configuration.roamingShare = 0.5
        configuration.toolCallShare = 0.3

        let latency = LatencyMatrix(
            oneWay: [
                RegionPair("us-east", "us-west"): .milliseconds(2), RegionPair("us-east", "eu-west"): .milliseconds(2),
                RegionPair("us-west", "eu-west"): .milliseconds(3),
            ], jitterFraction: 0.1)
        let outcome = try await Self.withCluster(latency: latency) { cluster, topology in
            let replay = TraceReplay(
                trace: trace, sessions: sessions, regions: topology.regionNames, baseURLs: Self.baseURLs(cluster, topology),
                configuration: configuration)
            return await replay.run()
        }

        #expect(outcome.recorder.errors.isEmpty, "\(outcome.recorder.firstErrors)")
        #expect(outcome.requestsReplayed == 300)
        #expect(outcome.sessionsVerified == sessions.sessions.count)
        #expect(outcome.sessionsMismatched == 0)
        #expect(outcome.roamingRequests > 0)

        let samples = outcome.recorder.samples
        let forwarded = samples.filter { $0.key.path == "forwarded" }.values.map(\.count).reduce(0, +)
        #expect(forwarded > 0)
        #expect(
            samples[OperationKey(operation: "append_user_turn", path: "local"), default: []].count
                + samples[OperationKey(operation: "append_user_turn", path: "forwarded"), default: []].count == 300)
        // Every forwarded call pays at least one round trip of the smallest delay, 2 × 1.8 ms.
        #expect(samples.filter { $0.key.path == "forwarded" }.values.joined().allSatisfy { $0 >= 3.6 })

        let report = ReplayReport(
            source: "synthetic", outcome: outcome, configuration: configuration, latency: latency,
            regions: ["us-east", "us-west", "eu-west"])
        #expect(report.errorCount == 0)
        #expect(report.forwardedBoundMilliseconds == 3 * 2 * 1.1 + 5)
        #expect(report.renderText().contains("8057") == false)
        #expect(report.json()["sessionsVerified"]?.integerValue == Int64(sessions.sessions.count))
    }

    @Test func entryRegionIsSeededAndSpread() {
        let trace = SyntheticWorkload.generate(seed: 1, requestCount: 10)
        let sessions = SessionRebuilder.rebuild(trace)
        var configuration = ReplayConfiguration()
        configuration.seed = 9
        let regions = ["a", "b", "c"]
        let first = TraceReplay(trace: trace, sessions: sessions, regions: regions, baseURLs: [:], configuration: configuration)
        let second = TraceReplay(trace: trace, sessions: sessions, regions: regions, baseURLs: [:], configuration: configuration)

        let entries = (0..<3000).map { first.entryRegion(ofSession: $0) }
        #expect(entries == (0..<3000).map { second.entryRegion(ofSession: $0) })
        for region in regions {
            let share = Double(entries.filter { $0 == region }.count) / 3000
            #expect(abs(share - 1.0 / 3) < 0.05)
        }
    }

    @Test func sharedTimestampsAreSpread() {
        let requests = [0, 0, 0, 3000, 3000, 5000].enumerated().map { index, timestamp in
            TraceRequest(index: index, timestampMilliseconds: timestamp, inputTokens: 10, outputTokens: 1, blockHashes: [0, index + 1])
        }
        let trace = ConversationTrace(requests: requests)
        #expect(TraceReplay.startOffsets(of: trace, spread: true) == [0, 1000, 2000, 3000, 4000, 5000])
        #expect(TraceReplay.startOffsets(of: trace, spread: false) == [0, 0, 0, 3000, 3000, 5000])
    }

    @Test func percentilesUseNearestRank() {
        let summary = LatencySummary((1...100).map(Double.init))
        #expect(summary.count == 100)
        #expect(summary.p50 == 50)
        #expect(summary.p95 == 95)
        #expect(summary.p99 == 99)
        #expect(summary.maximum == 100)
        #expect(LatencySummary([]).p99 == 0)
    }
}

/// Starts us-east, us-west and eu-west, 1 ms apart, replicating with the given batch delay.
func startReplicatingCluster(
    batchDelayMilliseconds: Int64, lease: RegionLease.Configuration = RegionLease.Configuration(),
    takeoverCheckInterval: Duration = .milliseconds(500), dataDirectory: String? = nil
) async throws -> EmbeddedCluster {
    let topology = try RegionTopology(
        regions: [RegionEndpoint(name: "us-east"), RegionEndpoint(name: "us-west"), RegionEndpoint(name: "eu-west")],
        latency: LatencyMatrix(
            oneWay: [
                RegionPair("us-east", "us-west"): .milliseconds(1), RegionPair("us-east", "eu-west"): .milliseconds(1),
                RegionPair("us-west", "eu-west"): .milliseconds(1),
            ], jitterFraction: 0))
    var replication = ReplicationOutbox.Configuration()
    replication.maximumBatchDelayMilliseconds = batchDelayMilliseconds
    let cluster = try EmbeddedCluster(
        topology: topology, keyRing: try TokenKeyRing.generated(), logger: Logger(label: "test", sink: .discarding),
        replication: replication, lease: lease, takeoverCheckInterval: takeoverCheckInterval, dataDirectory: dataDirectory)
    try await cluster.start()
    return cluster
}

/// Crashes `region` and returns once `successor` has taken it over after the
/// crash. An earlier takeover record (a busy machine can delay lease renewals
/// long enough for one) does not count.
func crashAndAwaitTakeover(_ region: String, by successor: String, in cluster: EmbeddedCluster) async throws {
    let crashedAt = SystemClock().nowMilliseconds()
    await cluster.crash(region)
    let monitor = try #require(cluster.node(successor)?.takeovers)
    for _ in 0..<600 {
        if let record = monitor.record(of: region), record.takenAtMilliseconds >= crashedAt { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    Issue.record("\(successor) did not take \(region) over within 30 s of the crash")
}

/// Creates a session at us-east with turns "turn 0" to "turn 2" (keys k0 to k2)
/// and returns once us-west's standby copy has all of them.
func createReplicatedSession(in cluster: EmbeddedCluster, client: HomeportClient) async throws -> SessionHandle {
    let home = cluster.baseURL(of: "us-east")!
    // A node whose lease renewals a busy test machine delayed is fenced for
    // a moment (503); a client retries.
    var created: SessionHandle?
    for attempt in 1...20 where created == nil {
        do {
            created = try await client.createSession(at: home, tenant: "acme").0
        } catch {
            guard error.isRetryable, attempt < 20 else { throw error }
            try await Task.sleep(for: .milliseconds(250))
        }
    }
    let session = created!
    for index in 0..<3 {
        _ = try await client.appendTurn(
            at: home, session, role: "user", content: "turn \(index)", tokens: 2, idempotencyKey: "k\(index)")
    }
    await cluster.node("us-east")!.replication!.drained()
    return session
}

@Suite struct ReplicationWiringTests {
    @Test func standbyMatchesHomeAfterReplay() async throws {
        let trace = SyntheticWorkload.generate(seed: 11, requestCount: 200, durationMilliseconds: 30_000)
        let sessions = SessionRebuilder.rebuild(trace)
        var configuration = ReplayConfiguration()
        configuration.timeCompression = 600
        configuration.toolCallShare = 0.5

        let cluster = try await startReplicatingCluster(batchDelayMilliseconds: 5)
        let topology = cluster.topology
        let baseURLs = Dictionary(uniqueKeysWithValues: topology.regionNames.map { ($0, cluster.baseURL(of: $0)!) })
        let outcome = await TraceReplay(
            trace: trace, sessions: sessions, regions: topology.regionNames, baseURLs: baseURLs, configuration: configuration
        ).run()

        for node in cluster.nodes {
            await node.replication!.drained()
        }
        let statistics = cluster.nodes.map { $0.replication!.statistics() }
        await cluster.shutdown()

        #expect(outcome.recorder.errors.isEmpty)
        #expect(statistics.allSatisfy { $0.pendingEntries == 0 })
        #expect(statistics.allSatisfy { $0.batchesFailed == 0 })

        var compared = 0
        for node in cluster.nodes {
            let neighbour = cluster.node(topology.neighbour(of: node.region)!)!
            for sessionID in try await allSessions(of: node) {
                let home = try await node.store.replicatedState(sessionID)
                let standby = try #require(neighbour.standbySession(sessionID, home: node.region))
                #expect(standby.turns == home.turns)
                #expect(standby.ledger.values.sorted { $0.callID < $1.callID } == home.ledger)
                #expect(standby.values.values.sorted { $0.name < $1.name } == home.values)
                #expect(neighbour.standbyPosition(of: sessionID, home: node.region)?.appliedStamp == home.info.lastStamp)
                compared += 1
            }
        }
        #expect(compared == sessions.sessions.count)
    }

    private func allSessions(of node: RegionNode) async throws -> [SessionID] {
        try #require(node.store as? MemorySessionStore).sessionIDs()
    }
}

@Suite struct StaleReadTests {
    @Test func neighbourAnswersAllowedReadFromStandby() async throws {
        let cluster = try await startReplicatingCluster(batchDelayMilliseconds: 2)
        let client = HomeportClient()
        let home = cluster.baseURL(of: "us-east")!
        let neighbour = cluster.baseURL(of: "us-west")!
        let third = cluster.baseURL(of: "eu-west")!

        let session = try await createReplicatedSession(in: cluster, client: client)

        let stale = try await client.readTurns(at: neighbour, session, tail: 2, allowStale: true)
        let strict = try await client.readTurns(at: neighbour, session, tail: 2)
        let elsewhere = try await client.readTurns(at: third, session, tail: 2, allowStale: true)
        await cluster.shutdown()

        #expect(stale.servedFromStandby)
        #expect(stale.servedBy == "us-west")
        #expect(stale.body["turns"] == strict.body["turns"])
        #expect(stale.body["standby"]?["appliedSeq"]?.integerValue == 3)
        #expect(stale.body["standby"]?["replicationGap"]?.boolValue == false)
        #expect(!strict.servedFromStandby)
        #expect(strict.servedBy == "us-east")
        #expect(!elsewhere.servedFromStandby)
        #expect(elsewhere.servedBy == "us-east")
    }
}
