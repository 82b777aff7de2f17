import Testing

@testable import Homeport

@Suite struct ReplicationOutboxTests {
    static let sessionA = SessionID("session-a")!
    static let sessionB = SessionID("session-b")!
    static let tenant = TenantID("acme")!

    static func makeOutbox(batch: Int = 3, delay: Int64 = 100, bound: Int = 100) throws -> ReplicationOutbox {
        try ReplicationOutbox(
            configuration: ReplicationOutbox.Configuration(
                maximumBatchEntries: batch, maximumBatchDelayMilliseconds: delay, maximumPendingEntries: bound))
    }

    /// Returns a skipped entry, because only its position matters to the outbox.
    static func entry(_ session: SessionID, _ seq: UInt64) -> ReplicationEntry {
        ReplicationEntry(session: session, tenant: tenant, home: "us-east", stamp: SessionStamp(epoch: 1, seq: seq), payload: .skipped)
    }

    static func snapshot(_ session: SessionID, _ seq: UInt64) -> ReplicationEntry {
        ReplicationEntry(
            session: session, tenant: tenant, home: "us-east", stamp: SessionStamp(epoch: 1, seq: seq),
            payload: .snapshot(SessionSnapshot(createdAtMilliseconds: 0, turns: [], ledger: [], values: [])))
    }

    /// Calls `nextBatch` outside the test macros, which cannot take a mutating call.
    static func batchIfDue(_ outbox: inout ReplicationOutbox, nowMilliseconds: Int64) -> ReplicationBatch? {
        outbox.nextBatch(nowMilliseconds: nowMilliseconds)
    }

    static func requireBatch(_ outbox: inout ReplicationOutbox, nowMilliseconds: Int64) throws -> ReplicationBatch {
        let batch = outbox.nextBatch(nowMilliseconds: nowMilliseconds)
        return try #require(batch, "no batch is due at \(nowMilliseconds) ms")
    }

    static func positions(_ batch: ReplicationBatch) -> [String] {
        batch.entries.map { "\($0.session.rawValue)@\($0.seq)" }
    }

    @Test func batchFallsDueBySize() throws {
        var outbox = try Self.makeOutbox(batch: 3, delay: 100)
        _ = outbox.enqueue(Self.entry(Self.sessionA, 1), nowMilliseconds: 0)
        _ = outbox.enqueue(Self.entry(Self.sessionA, 2), nowMilliseconds: 1)
        #expect(Self.batchIfDue(&outbox, nowMilliseconds: 2) == nil)

        _ = outbox.enqueue(Self.entry(Self.sessionB, 1), nowMilliseconds: 2)
        _ = outbox.enqueue(Self.entry(Self.sessionA, 3), nowMilliseconds: 3)
        let batch = try Self.requireBatch(&outbox, nowMilliseconds: 3)

        #expect(Self.positions(batch) == ["session-a@1", "session-a@2", "session-b@1"])
        #expect(batch.homeLastSeq == [Self.sessionA: 3, Self.sessionB: 1])
        #expect(Self.batchIfDue(&outbox, nowMilliseconds: 3) == nil)
        #expect(outbox.sentBatchCount == 1)
    }

    @Test func batchFallsDueByAge() throws {
        var outbox = try Self.makeOutbox(batch: 10, delay: 50)
        _ = outbox.enqueue(Self.entry(Self.sessionA, 1), nowMilliseconds: 1_000)
        _ = outbox.enqueue(Self.entry(Self.sessionA, 2), nowMilliseconds: 1_020)

        #expect(outbox.nextBatchDeadlineMilliseconds == 1_050)
        #expect(Self.batchIfDue(&outbox, nowMilliseconds: 1_049) == nil)
        let batch = try Self.requireBatch(&outbox, nowMilliseconds: 1_050)
        #expect(Self.positions(batch) == ["session-a@1", "session-a@2"])
        #expect(outbox.nextBatchDeadlineMilliseconds == nil)
    }

    @Test func batchNeverExceedsMaximumEntries() throws {
        var outbox = try Self.makeOutbox(batch: 4, delay: 0)
        for seq in UInt64(1)...10 {
            _ = outbox.enqueue(Self.entry(Self.sessionA, seq), nowMilliseconds: 0)
        }

        var sizes: [Int] = []
        while let batch = outbox.nextBatch(nowMilliseconds: 0) {
            sizes.append(batch.entries.count)
        }
        #expect(sizes == [4, 4, 2])
        #expect(outbox.pendingEntryCount == 10)
        #expect(outbox.inFlightBatchCount == 3)
    }

    @Test func batchIDsAreDistinct() throws {
        var outbox = try Self.makeOutbox(batch: 1, delay: 0)
        _ = outbox.enqueue(Self.entry(Self.sessionA, 1), nowMilliseconds: 0)
        _ = outbox.enqueue(Self.entry(Self.sessionA, 2), nowMilliseconds: 0)
        let first = try Self.requireBatch(&outbox, nowMilliseconds: 0)
        outbox.batchFailed(first.id)
        let resent = try Self.requireBatch(&outbox, nowMilliseconds: 0)

        #expect(resent.id != first.id)
        #expect(resent.entries == first.entries)
    }

    @Test func acknowledgementDropsEntriesAtOrBelowPosition() throws {
        var outbox = try Self.makeOutbox(batch: 10, delay: 0)
        for seq in UInt64(1)...4 {
            _ = outbox.enqueue(Self.entry(Self.sessionA, seq), nowMilliseconds: 0)
        }
        _ = outbox.enqueue(Self.entry(Self.sessionB, 1), nowMilliseconds: 0)
        let batch = try Self.requireBatch(&outbox, nowMilliseconds: 0)

        let actions = outbox.acknowledge(ReplicationAcknowledgement(batchID: batch.id, positions: [Self.sessionA: 4, Self.sessionB: 1]))

        #expect(actions.isEmpty)
        #expect(outbox.pendingEntryCount == 0)
        #expect(outbox.inFlightBatchCount == 0)
        #expect(outbox.lag(nowMilliseconds: 10) == ReplicationOutbox.Lag(pendingEntries: 0, oldestEntryAgeMilliseconds: 0))
    }

    @Test func unappliedEntriesOfAcknowledgedBatchAreResent() throws {
        var outbox = try Self.makeOutbox(batch: 10, delay: 0)
        for seq in UInt64(1)...3 {
            _ = outbox.enqueue(Self.entry(Self.sessionA, seq), nowMilliseconds: 0)
        }
        let batch = try Self.requireBatch(&outbox, nowMilliseconds: 0)

        // The standby applied seq 1 and discarded 2 and 3.
        let actions = outbox.acknowledge(ReplicationAcknowledgement(batchID: batch.id, positions: [Self.sessionA: 1]))
        let resent = try Self.requireBatch(&outbox, nowMilliseconds: 0)

        #expect(actions.isEmpty)
        #expect(Self.positions(resent) == ["session-a@2", "session-a@3"])
    }

    @Test func unknownAcknowledgementIsHarmless() throws {
        var outbox = try Self.makeOutbox(batch: 10, delay: 0)
        _ = outbox.enqueue(Self.entry(Self.sessionA, 1), nowMilliseconds: 0)
        _ = outbox.enqueue(Self.entry(Self.sessionA, 2), nowMilliseconds: 0)
        let batch = try Self.requireBatch(&outbox, nowMilliseconds: 0)
        let acknowledgement = ReplicationAcknowledgement(batchID: batch.id, positions: [Self.sessionA: 1])
        _ = outbox.acknowledge(acknowledgement)
        let resent = try Self.requireBatch(&outbox, nowMilliseconds: 0)

        let repeated = outbox.acknowledge(acknowledgement)
        let unknown = outbox.acknowledge(ReplicationAcknowledgement(batchID: ReplicationBatch.ID(999), positions: [:]))

        #expect(repeated.isEmpty)
        #expect(unknown.isEmpty)
        #expect(outbox.pendingEntryCount == 1)
        #expect(outbox.inFlightBatchCount == 1)
        _ = outbox.acknowledge(ReplicationAcknowledgement(batchID: resent.id, positions: [Self.sessionA: 2]))
        #expect(outbox.pendingEntryCount == 0)
    }

    @Test func failedBatchIsResentOldestFirst() throws {
        var outbox = try Self.makeOutbox(batch: 2, delay: 10)
        _ = outbox.enqueue(Self.entry(Self.sessionA, 1), nowMilliseconds: 0)
        _ = outbox.enqueue(Self.entry(Self.sessionA, 2), nowMilliseconds: 0)
        let lost = try Self.requireBatch(&outbox, nowMilliseconds: 0)
        _ = outbox.enqueue(Self.entry(Self.sessionA, 3), nowMilliseconds: 5)

        outbox.batchFailed(lost.id)
        outbox.batchFailed(lost.id)
        let resent = try Self.requireBatch(&outbox, nowMilliseconds: 5)

        #expect(Self.positions(resent) == ["session-a@1", "session-a@2"])
        #expect(outbox.lag(nowMilliseconds: 30) == ReplicationOutbox.Lag(pendingEntries: 3, oldestEntryAgeMilliseconds: 30))
        #expect(outbox.sentBatchCount == 2)
    }

    @Test func pastBoundLargestSessionIsCoalesced() throws {
        var outbox = try Self.makeOutbox(batch: 2, delay: 100, bound: 4)
        _ = outbox.enqueue(Self.entry(Self.sessionB, 1), nowMilliseconds: 0)
        for seq in UInt64(1)...3 {
            let action = outbox.enqueue(Self.entry(Self.sessionA, seq), nowMilliseconds: 10)
            #expect(action == nil)
        }
        let inFlight = try Self.requireBatch(&outbox, nowMilliseconds: 10)

        let action = outbox.enqueue(Self.entry(Self.sessionA, 4), nowMilliseconds: 20)
        #expect(action == .readSnapshot(Self.sessionA))
        // Only one snapshot request is outstanding at a time, and writes still go in.
        let later = outbox.enqueue(Self.entry(Self.sessionA, 5), nowMilliseconds: 21)
        #expect(later == nil)
        #expect(outbox.pendingEntryCount == 6)

        // The snapshot was read after seq 4 was written and before seq 5.
        outbox.coalesce(Self.snapshot(Self.sessionA, 4), nowMilliseconds: 22)

        #expect(outbox.pendingEntryCount == 3)
        #expect(outbox.snapshotCount == 1)
        #expect(outbox.lag(nowMilliseconds: 30).oldestEntryAgeMilliseconds == 30)
        outbox.batchFailed(inFlight.id)
        let batch = try Self.requireBatch(&outbox, nowMilliseconds: 200)
        #expect(Self.positions(batch) == ["session-b@1", "session-a@4"])
        #expect(batch.entries[1].isSnapshot)
        let last = try Self.requireBatch(&outbox, nowMilliseconds: 200)
        #expect(Self.positions(last) == ["session-a@5"])
    }

    @Test func entryCoveredBySnapshotIsDropped() throws {
        var outbox = try Self.makeOutbox()
        outbox.coalesce(Self.snapshot(Self.sessionA, 6), nowMilliseconds: 0)

        // The shell enqueued seq 5 late, after the snapshot at 6 was read.
        _ = outbox.enqueue(Self.entry(Self.sessionA, 5), nowMilliseconds: 1)
        outbox.coalesce(Self.snapshot(Self.sessionA, 4), nowMilliseconds: 2)

        #expect(outbox.pendingEntryCount == 1)
        #expect(outbox.snapshotCount == 1)
    }

    @Test func sessionWithOnePendingEntryIsNotCoalesced() throws {
        var outbox = try Self.makeOutbox(batch: 1, delay: 100, bound: 2)
        _ = outbox.enqueue(Self.entry(Self.sessionA, 1), nowMilliseconds: 0)
        _ = outbox.enqueue(Self.entry(Self.sessionB, 1), nowMilliseconds: 0)
        let action = outbox.enqueue(Self.entry(SessionID("session-c")!, 1), nowMilliseconds: 0)

        #expect(action == nil)
        #expect(outbox.pendingEntryCount == 3)
    }

    @Test func standbyStuckBehindGapGetsSnapshot() throws {
        var outbox = try Self.makeOutbox(batch: 10, delay: 0)
        // The shell lost seq 3: the outbox has 1, 2 and 4, 5.
        for seq: UInt64 in [1, 2, 4, 5] {
            _ = outbox.enqueue(Self.entry(Self.sessionA, seq), nowMilliseconds: 0)
        }
        let batch = try Self.requireBatch(&outbox, nowMilliseconds: 0)

        let actions = outbox.acknowledge(ReplicationAcknowledgement(batchID: batch.id, positions: [Self.sessionA: 2]))

        #expect(actions == [.readSnapshot(Self.sessionA)])
        outbox.snapshotFailed(Self.sessionA)
        let resent = try Self.requireBatch(&outbox, nowMilliseconds: 0)
        let again = outbox.acknowledge(ReplicationAcknowledgement(batchID: resent.id, positions: [Self.sessionA: 2]))
        #expect(again == [.readSnapshot(Self.sessionA)])
    }

    @Test func invalidConfigurationIsRejected() {
        #expect(throws: ConfigurationError.self) {
            _ = try ReplicationOutbox(configuration: ReplicationOutbox.Configuration(maximumBatchEntries: 0))
        }
        #expect(throws: ConfigurationError.self) {
            _ = try ReplicationOutbox(configuration: ReplicationOutbox.Configuration(maximumBatchDelayMilliseconds: -1))
        }
        do {
            _ = try ReplicationOutbox(
                configuration: ReplicationOutbox.Configuration(maximumBatchEntries: 10, maximumPendingEntries: 5))
            Issue.record("a bound below the batch size was accepted")
        } catch {
            #expect(error.field == "replication.maximumPendingEntries")
        }
    }
}
