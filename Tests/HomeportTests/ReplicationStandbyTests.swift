import Testing

@testable import Homeport

@Suite struct ReplicationStandbyTests {
    static let session = SessionID("session-a")!
    static let tenant = TenantID("acme")!
    static let home = "us-east"

    static func entry(_ seq: UInt64, _ payload: ReplicationEntry.Payload, home: String = home) -> ReplicationEntry {
        ReplicationEntry(session: session, tenant: tenant, home: home, stamp: SessionStamp(epoch: 1, seq: seq), payload: payload)
    }

    static func created() -> ReplicationEntry {
        entry(0, .sessionCreated(createdAtMilliseconds: 500))
    }

    static func turn(_ seq: UInt64, _ content: String) -> Turn {
        Turn(
            stamp: SessionStamp(epoch: 1, seq: seq), role: .user, content: content, tokens: 1, createdAtMilliseconds: Int64(seq),
            metadata: [:], idempotencyKey: nil)
    }

    static func turnEntry(_ seq: UInt64, _ content: String) -> ReplicationEntry {
        entry(seq, .turnAppended(turn(seq, content)))
    }

    static func batch(_ id: UInt64, _ entries: [ReplicationEntry], homeLastSeq: UInt64? = nil) -> ReplicationBatch {
        let lastSeq = homeLastSeq ?? entries.map(\.seq).max() ?? 0
        return ReplicationBatch(id: ReplicationBatch.ID(id), entries: entries, homeLastSeq: [session: lastSeq])
    }

    static func contents(_ standby: StandbyReplica) -> [String] {
        standby.session(session)?.turns.map(\.content) ?? []
    }

    @Test func entriesInOrderAreApplied() throws {
        var standby = try StandbyReplica(home: Self.home)
        let acknowledgement = standby.apply(Self.batch(1, [Self.created(), Self.turnEntry(1, "a"), Self.turnEntry(2, "b")]))

        #expect(acknowledgement == ReplicationAcknowledgement(batchID: ReplicationBatch.ID(1), positions: [Self.session: 2]))
        #expect(Self.contents(standby) == ["a", "b"])
        let copy = try #require(standby.session(Self.session))
        #expect(copy.createdAtMilliseconds == 500)
        #expect(copy.bufferBytes == 2)
        #expect(standby.appliedEntryCount == 3)
    }

    @Test func duplicateEntriesAreIgnored() throws {
        var standby = try StandbyReplica(home: Self.home)
        let first = Self.batch(1, [Self.created(), Self.turnEntry(1, "a")])
        _ = standby.apply(first)

        let again = standby.apply(first)

        #expect(again.positions == [Self.session: 1])
        #expect(Self.contents(standby) == ["a"])
        #expect(standby.duplicateEntryCount == 2)
    }

    @Test func entryAfterGapIsHeldUntilGapFills() throws {
        var standby = try StandbyReplica(home: Self.home)
        _ = standby.apply(Self.batch(1, [Self.created(), Self.turnEntry(1, "a")]))

        let ahead = standby.apply(Self.batch(3, [Self.turnEntry(3, "c")]))
        #expect(ahead.positions == [Self.session: 1])
        #expect(standby.heldEntryCount == 1)
        #expect(standby.position(of: Self.session)?.replicationGap == true)

        let filled = standby.apply(Self.batch(2, [Self.turnEntry(2, "b")], homeLastSeq: 2))
        #expect(filled.positions == [Self.session: 3])
        #expect(Self.contents(standby) == ["a", "b", "c"])
        #expect(standby.heldEntryCount == 0)
        #expect(standby.position(of: Self.session)?.replicationGap == false)
    }

    @Test func entriesBeforeCreationAreHeld() throws {
        var standby = try StandbyReplica(home: Self.home)
        let early = standby.apply(Self.batch(2, [Self.turnEntry(1, "a")]))

        #expect(early.positions.isEmpty)
        #expect(standby.session(Self.session) == nil)
        _ = standby.apply(Self.batch(1, [Self.created()]))
        #expect(Self.contents(standby) == ["a"])
    }

    @Test func heldEntriesPastBoundAreDiscarded() throws {
        var standby = try StandbyReplica(home: Self.home, configuration: StandbyReplica.Configuration(maximumHeldEntries: 1))
        _ = standby.apply(Self.batch(1, [Self.created()]))

        _ = standby.apply(Self.batch(2, [Self.turnEntry(2, "b"), Self.turnEntry(3, "c")]))
        #expect(standby.heldEntryCount == 1)
        #expect(standby.discardedEntryCount == 1)

        // The outbox resends what was not acknowledged.
        let acknowledgement = standby.apply(Self.batch(3, [Self.turnEntry(1, "a"), Self.turnEntry(2, "b"), Self.turnEntry(3, "c")]))
        #expect(acknowledgement.positions == [Self.session: 3])
        #expect(Self.contents(standby) == ["a", "b", "c"])
    }

    @Test func newerSnapshotReplacesCopy() throws {
        var standby = try StandbyReplica(home: Self.home)
        _ = standby.apply(Self.batch(1, [Self.created(), Self.turnEntry(1, "a")]))
        let ledgerEntry = LedgerEntry(
            callID: "call-1", name: "search", arguments: .null, status: .succeeded, result: .bool(true),
            stamp: SessionStamp(epoch: 1, seq: 3), updatedAtMilliseconds: 3)
        let snapshot = SessionSnapshot(
            createdAtMilliseconds: 500, turns: [Self.turn(2, "b")], ledger: [ledgerEntry], values: [])

        // The turn at 5 arrives first and waits for the snapshot at 4.
        _ = standby.apply(Self.batch(3, [Self.turnEntry(5, "e")]))
        let acknowledgement = standby.apply(Self.batch(2, [Self.entry(4, .snapshot(snapshot))]))

        #expect(acknowledgement.positions == [Self.session: 5])
        #expect(Self.contents(standby) == ["b", "e"])
        #expect(standby.session(Self.session)?.ledger["call-1"] == ledgerEntry)

        let older = SessionSnapshot(createdAtMilliseconds: 500, turns: [], ledger: [], values: [])
        _ = standby.apply(Self.batch(4, [Self.entry(3, .snapshot(older))]))
        #expect(Self.contents(standby) == ["b", "e"])
    }

    @Test func recordsNewerThanEntryAreKept() throws {
        var standby = try StandbyReplica(home: Self.home)
        let old = SessionValue(name: "mode", value: .string("old"), stamp: SessionStamp(epoch: 1, seq: 3), updatedAtMilliseconds: 3)
        let new = SessionValue(name: "mode", value: .string("new"), stamp: SessionStamp(epoch: 1, seq: 4), updatedAtMilliseconds: 4)

        // The snapshot at 1 was read while the home wrote seqs 2 to 4, so it
        // already contains the turn at 2 and the value written at 4.
        let snapshot = SessionSnapshot(createdAtMilliseconds: 500, turns: [Self.turn(2, "b")], ledger: [], values: [new])
        _ = standby.apply(Self.batch(1, [Self.entry(1, .snapshot(snapshot)), Self.turnEntry(2, "b"), Self.entry(3, .valuePut(old))]))

        #expect(Self.contents(standby) == ["b"])
        #expect(standby.session(Self.session)?.values["mode"] == new)
        #expect(standby.session(Self.session)?.appliedSeq == 3)

        _ = standby.apply(Self.batch(2, [Self.entry(4, .valuePut(new))]))
        #expect(standby.session(Self.session)?.values["mode"] == new)
        #expect(standby.session(Self.session)?.appliedSeq == 4)
    }

    @Test func oldestTurnsAreDroppedAsAtHome() throws {
        var limits = SessionStoreLimits()
        limits.maximumTurns = 2
        limits.dropOldestTurns = true
        var standby = try StandbyReplica(home: Self.home, configuration: StandbyReplica.Configuration(limits: limits))

        _ = standby.apply(Self.batch(1, [Self.created(), Self.turnEntry(1, "a"), Self.turnEntry(2, "b"), Self.turnEntry(3, "c")]))

        #expect(Self.contents(standby) == ["b", "c"])
        #expect(standby.session(Self.session)?.bufferBytes == 2)
    }

    @Test func skippedEntryAdvancesPosition() throws {
        var standby = try StandbyReplica(home: Self.home)
        let acknowledgement = standby.apply(Self.batch(1, [Self.created(), Self.entry(1, .skipped), Self.turnEntry(2, "b")]))

        #expect(acknowledgement.positions == [Self.session: 2])
        #expect(Self.contents(standby) == ["b"])
    }

    @Test func reportedLastSeqShowsReplicationGap() throws {
        var standby = try StandbyReplica(home: Self.home)
        _ = standby.apply(Self.batch(1, [Self.created(), Self.turnEntry(1, "a")], homeLastSeq: 4))

        let position = try #require(standby.position(of: Self.session))
        #expect(position.appliedStamp == SessionStamp(epoch: 1, seq: 1))
        #expect(position.homeLastSeq == 4)
        #expect(position.replicationGap)
    }

    @Test func entryOfAnotherHomeIsIgnored() throws {
        var standby = try StandbyReplica(home: Self.home)
        let acknowledgement = standby.apply(Self.batch(1, [Self.entry(0, .sessionCreated(createdAtMilliseconds: 0), home: "eu-west")]))

        #expect(acknowledgement.positions.isEmpty)
        #expect(standby.sessionCount == 0)
        #expect(standby.foreignEntryCount == 1)
    }
}
