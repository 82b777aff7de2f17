import Foundation
import Testing

@testable import Homeport

@Suite struct ReconcileTests {
    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "homeport-reconcile-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// A 1.5 s batch interval leaves the writes just before the crash
    /// unreplicated. A 4 s lease makes the takeover come quickly, yet
    /// survives 2.5 s of a test machine busy with other suites.
    static func startCluster(dataDirectory: String) async throws -> EmbeddedCluster {
        var lease = RegionLease.Configuration()
        lease.ttl = .seconds(4)
        lease.renewInterval = .milliseconds(500)
        lease.safetyMargin = .seconds(1)
        return try await startReplicatingCluster(
            batchDelayMilliseconds: 1500, lease: lease, takeoverCheckInterval: .milliseconds(50), dataDirectory: dataDirectory)
    }

    @Test func returningHomeShipsItsTailToTheNewHome() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cluster = try await Self.startCluster(dataDirectory: directory)
        let client = HomeportClient()
        let home = cluster.baseURL(of: "us-east")!
        let neighbour = cluster.baseURL(of: "us-west")!

        // Turns 0 to 2 reach the standby; the writes after them do not.
        let session = try await createReplicatedSession(in: cluster, client: client)
        _ = try await client.appendTurn(at: home, session, role: "user", content: "turn 3", tokens: 1, idempotencyKey: "k3")
        _ = try await client.appendTurn(at: home, session, role: "user", content: "turn 4", tokens: 1, idempotencyKey: "k4")
        _ = try await client.writeLedgerEntry(at: home, session, callID: "c1", status: "requested", name: "search")
        _ = try await client.writeLedgerEntry(at: home, session, callID: "c1", status: "succeeded", result: .string("found"))
        _ = try await client.putValue(at: home, session, name: "mode", value: .string("fast"))
        try await crashAndAwaitTakeover("us-east", by: "us-west", in: cluster)

        // The new home misses the tail. A client that lost the response to
        // "turn 4" retries it there, and the call ends differently there.
        let gap = try await client.readTurns(at: neighbour, session, tail: nil)
        #expect(gap.replicationGap)
        #expect(gap.body["turns"]?.arrayValue?.count == 3)
        _ = try await client.appendTurn(at: neighbour, session, role: "user", content: "turn 4", tokens: 1, idempotencyKey: "k4")
        _ = try await client.appendTurn(at: neighbour, session, role: "user", content: "turn 5", tokens: 1, idempotencyKey: "k5")
        _ = try await client.writeLedgerEntry(at: neighbour, session, callID: "c1", status: "failed", name: "search")

        try await cluster.restart("us-east")
        let report = try #require(cluster.node("us-east")!.completedReconciles.first)
        #expect(report.to == "us-west")
        #expect(report.sessions == 1)
        #expect(report.recordsMerged == 3)

        // Turn 3 is recovered before the new epoch's turns; the retried turn 4
        // is not duplicated; the ledger keeps both endings; the value arrives.
        let merged = try await client.readTurns(at: neighbour, session, tail: nil)
        #expect(!merged.replicationGap)
        #expect(merged.body["replicationGap"] == nil)
        let turns = try #require(merged.body["turns"]?.arrayValue)
        #expect(turns.map { $0["content"]?.stringValue } == ["turn 0", "turn 1", "turn 2", "turn 3", "turn 4", "turn 5"])
        #expect(turns.map { $0["recovered"]?.boolValue ?? false } == [false, false, false, true, false, false])
        #expect(turns.map { $0["epoch"]?.integerValue } == [1, 1, 1, 1, 2, 2])
        let ledger = try await client.send(
            "GET", baseURL: neighbour, path: "/v1/tenants/acme/sessions/\(session.id)/ledger/c1", token: session.token, body: nil)
        #expect(ledger.body["status"]?.stringValue == "failed")
        #expect(ledger.body["conflictingStatus"]?.stringValue == "succeeded")
        let value = try await client.send(
            "GET", baseURL: neighbour, path: "/v1/tenants/acme/sessions/\(session.id)/values/mode", token: session.token, body: nil)
        #expect(value.body["value"]?.stringValue == "fast")

        // The old home sends the old token on to the new home, and homes new
        // sessions itself again.
        let viaOldHome = try await client.readTurns(at: home, session, tail: nil)
        #expect(viaOldHome.servedBy == "us-west")
        #expect(viaOldHome.body["turns"]?.arrayValue?.count == 6)
        let (fresh, created) = try await client.createSession(at: home, tenant: "acme")
        #expect(created.servedBy == "us-east")
        let freshRead = try await client.readTurns(at: cluster.baseURL(of: "eu-west")!, fresh, tail: nil)
        #expect(freshRead.servedBy == "us-east")

        // A second restart finds the reconcile done and ships nothing again.
        await cluster.crash("us-east")
        try await cluster.restart("us-east")
        #expect(cluster.node("us-east")!.completedReconciles.isEmpty)
        let again = try await client.readTurns(at: neighbour, session, tail: nil)
        #expect(again.body["turns"]?.arrayValue?.count == 6)
        let freshAgain = try await client.readTurns(at: home, fresh, tail: nil)
        #expect(freshAgain.servedBy == "us-east")
        await cluster.shutdown()
    }

    @Test func mergeFollowsEachTypesRule() throws {
        let limits = SessionStoreLimits()
        let id = SessionID("s1")!
        let tenant = TenantID("acme")!
        var record = SessionRecord(id: id, tenant: tenant, home: "us-west", epoch: 2, createdAtMilliseconds: 0)
        let stamp = { (epoch: UInt64, seq: UInt64) in SessionStamp(epoch: epoch, seq: seq) }
        record.turns = [
            Turn(stamp: stamp(1, 1), role: .user, content: "a", tokens: 1, createdAtMilliseconds: 0, metadata: [:]),
            Turn(stamp: stamp(2, 2), role: .user, content: "c", tokens: 1, createdAtMilliseconds: 0, metadata: [:]),
        ]
        record.lastSeq = 3
        record.ledger["running"] = LedgerEntry(
            callID: "running", name: "t", arguments: .null, status: .running, stamp: stamp(2, 3), updatedAtMilliseconds: 0)
        record.values["v"] = SessionValue(name: "v", value: .integer(2), stamp: stamp(2, 3), updatedAtMilliseconds: 0)
        record.replicationGap = true
        record.adoptedPosition = stamp(1, 1)

        let tail = ReconcileTail(
            session: id, tenant: tenant, home: "us-east", lastStamp: stamp(1, 5), sinceSeq: 1, createdAtMilliseconds: 0,
            turns: [Turn(stamp: stamp(1, 2), role: .user, content: "b", tokens: 1, createdAtMilliseconds: 0, metadata: [:])],
            ledger: [
                LedgerEntry(
                    callID: "running", name: "t", arguments: .null, status: .requested, stamp: stamp(1, 3), updatedAtMilliseconds: 0),
                LedgerEntry(
                    callID: "new", name: "t", arguments: .null, status: .succeeded, stamp: stamp(1, 4), updatedAtMilliseconds: 0),
            ],
            values: [SessionValue(name: "v", value: .integer(1), stamp: stamp(1, 5), updatedAtMilliseconds: 0)])

        #expect(record.merge(tail, limits: limits) == 2)
        #expect(record.turns.map(\.content) == ["a", "b", "c"])
        #expect(record.turns.map(\.recovered) == [false, true, false])
        // The older status and the older value lose; the missing call joins.
        #expect(record.ledger["running"]?.status == .running)
        #expect(record.ledger["new"]?.status == .succeeded)
        #expect(record.values["v"]?.value == .integer(2))
        #expect(!record.replicationGap)
        #expect(record.adoptedPosition == stamp(1, 5))
        #expect(record.lastSeq == 4)

        // Merging the same tail again changes nothing and takes no stamp.
        #expect(record.merge(tail, limits: limits) == 0)
        #expect(record.lastSeq == 4)
    }

    @Test func tailStartingPastTheHeldPositionIsRefused() async throws {
        let store = MemorySessionStore()
        let id = SessionID("s2")!
        let tail = ReconcileTail(
            session: id, tenant: TenantID("acme")!, home: "us-east", lastStamp: SessionStamp(epoch: 1, seq: 9), sinceSeq: 4,
            createdAtMilliseconds: 0, turns: [], ledger: [], values: [])
        #expect(throws: SessionStoreError.self) {
            try store.mergeReconcileTail(tail, standby: nil, home: "us-west")
        }
        #expect(store.sessionIDs().isEmpty)
    }
}
