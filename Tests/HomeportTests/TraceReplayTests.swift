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
        let cluster = EmbeddedCluster(
            topology: topology, keyRing: try TokenKeyRing.generated(), logger: Logger(label: "test", sink: .discarding))
        try cluster.start()
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
