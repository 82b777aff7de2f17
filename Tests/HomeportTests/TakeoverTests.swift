import Testing
@testable import Homeport

@Suite struct TakeoverTests {
    static func startCluster() async throws -> EmbeddedCluster {
        var lease = RegionLease.Configuration()
        // Short enough to keep the test near four seconds, long enough that
        // renewals survive 2.5 s of a test machine busy with other suites.
        lease.ttl = .seconds(4)
        lease.renewInterval = .milliseconds(500)
        lease.safetyMargin = .seconds(1)
        return try await startReplicatingCluster(batchDelayMilliseconds: 2, lease: lease, takeoverCheckInterval: .milliseconds(50))
    }

    @Test func neighbourTakesOverAndRehomesOnNextRequest() async throws {
        let cluster = try await Self.startCluster()
        let client = HomeportClient()
        let home = cluster.baseURL(of: "us-east")!
        let neighbour = cluster.baseURL(of: "us-west")!
        let third = cluster.baseURL(of: "eu-west")!

        let session = try await createReplicatedSession(in: cluster, client: client)

        try await crashAndAwaitTakeover("us-east", by: "us-west", in: cluster)

        // The old token still names us-east; eu-west finds the takeover record
        // and the new home re-homes the session at the next epoch.
        let read = try await client.readTurns(at: third, session, tail: nil)
        let newToken = try #require(read.routeToken)
        #expect(read.servedBy == "us-west")
        #expect(read.body["turns"]?.arrayValue?.count == 3)
        #expect(read.body["epoch"]?.integerValue == 2)
        #expect(read.body["replicationGap"]?.boolValue == true)
        #expect(read.replicationGap)
        #expect(newToken != session.token)

        // A write with the old token at the new home is served at epoch 2.
        let appended = try await client.appendTurn(at: neighbour, session, role: "user", content: "after", tokens: 1, idempotencyKey: "k3")
        #expect(appended.body["turn"]?["epoch"]?.integerValue == 2)
        #expect(appended.body["turn"]?["seq"]?.integerValue == 4)

        // A retry of a turn acknowledged by the old home is still recognised.
        let retry = try await client.appendTurn(at: neighbour, session, role: "user", content: "turn 2", tokens: 2, idempotencyKey: "k2")
        #expect(retry.replayed)

        // The new token routes to the new home from anywhere.
        var rehomed = session
        rehomed.token = newToken
        rehomed.home = "us-west"
        let final = try await client.readTurns(at: third, rehomed, tail: nil)
        #expect(final.servedBy == "us-west")
        #expect(final.body["replicationGap"]?.boolValue == true)
        #expect(final.body["turns"]?.arrayValue?.map { $0["content"]?.stringValue } == ["turn 0", "turn 1", "turn 2", "after"])
        await cluster.shutdown()
    }

    @Test func takeoverHasExactlyOneWinner() async throws {
        let store = EmbeddedLinearizableStore()
        let logger = Logger(label: "test", sink: .discarding)
        let monitors = ["us-west", "eu-west", "ap-south"].map {
            TakeoverMonitor(region: $0, watched: ["us-east"], store: store, clock: SystemClock(), logger: logger)
        }
        await withTaskGroup(of: Void.self) { group in
            for monitor in monitors {
                group.addTask { await monitor.step() }
            }
        }
        #expect(monitors.filter { $0.hasTakenOver("us-east") }.count == 1)
        let record = try #require(try await store.get(TakeoverRecord.key(of: "us-east")).flatMap { TakeoverRecord(bytes: $0.value) })
        #expect(monitors.first { $0.hasTakenOver("us-east") }?.region == record.to)
    }

    @Test func liveLeasePreventsTakeover() async throws {
        let store = EmbeddedLinearizableStore()
        let logger = Logger(label: "test", sink: .discarding)
        let keeper = try RegionLeaseKeeper(region: "us-east", store: store, clock: SystemClock(), logger: logger)
        await keeper.step()
        let monitor = TakeoverMonitor(region: "us-west", watched: ["us-east"], store: store, clock: SystemClock(), logger: logger)
        await monitor.step()

        #expect(!monitor.hasTakenOver("us-east"))
        #expect(try await store.get(TakeoverRecord.key(of: "us-east")) == nil)
    }
}
