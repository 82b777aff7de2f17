import Testing

@testable import Homeport

/// A home region for replication tests: a real memory store whose every
/// mutation is enqueued in an outbox, and a shell that serves the outbox's
/// snapshot requests from the store.
struct ReplicatedHome {
    static let region = "us-east"
    static let tenant = TenantID("acme")!

    let store: MemorySessionStore
    var outbox: ReplicationOutbox
    var nowMilliseconds: Int64 = 1_000
    /// Snapshot requests not yet served, oldest first.
    var snapshotRequests: [SessionID] = []

    init(limits: SessionStoreLimits = SessionStoreLimits(), outbox configuration: ReplicationOutbox.Configuration) throws {
        store = MemorySessionStore(limits: limits)
        outbox = try ReplicationOutbox(configuration: configuration)
    }

    mutating func enqueue(_ entry: ReplicationEntry) {
        if let action = outbox.enqueue(entry, nowMilliseconds: nowMilliseconds) {
            perform([action])
        }
    }

    mutating func perform(_ actions: [ReplicationOutbox.Action]) {
        for action in actions {
            switch action {
            case .readSnapshot(let session):
                snapshotRequests.append(session)
            }
        }
    }

    /// Serves every outstanding snapshot request from the store.
    mutating func serveSnapshotRequests() throws {
        let requests = snapshotRequests
        snapshotRequests = []
        for session in requests {
            outbox.coalesce(try snapshot(of: session), nowMilliseconds: nowMilliseconds)
        }
    }

    /// Reads the session's info first and its records after, as
    /// `ReplicationEntry.snapshot` requires.
    func snapshot(of session: SessionID) throws -> ReplicationEntry {
        let info = try store.sessionInfo(session)
        return ReplicationEntry.snapshot(
            info, turns: try store.readTurns(session, .all).turns, ledger: try store.ledgerEntries(session),
            values: try store.values(session))
    }

    mutating func createSession(_ id: SessionID) throws {
        let info = try store.createSession(
            id, tenant: Self.tenant, home: Self.region, epoch: 1, nowMilliseconds: nowMilliseconds)
        enqueue(.sessionCreated(info))
    }

    mutating func appendTurn(_ id: SessionID, _ draft: TurnDraft) throws {
        let result = try store.appendTurn(id, draft, nowMilliseconds: nowMilliseconds)
        guard !result.replayed else { return }
        enqueue(entry(id, result.turn.stamp, .turnAppended(result.turn)))
    }

    mutating func writeLedgerEntry(_ id: SessionID, _ write: LedgerWrite) throws {
        let result = try store.writeLedgerEntry(id, write, nowMilliseconds: nowMilliseconds)
        guard result.applied else { return }
        enqueue(entry(id, result.entry.stamp, .ledgerEntryWritten(result.entry)))
    }

    mutating func putValue(_ id: SessionID, name: String, value: JSONValue) throws {
        let stored = try store.putValue(id, name: name, value: value, nowMilliseconds: nowMilliseconds)
        enqueue(entry(id, stored.stamp, .valuePut(stored)))
    }

    mutating func putKVCacheRefs(_ id: SessionID, blocks: [Int64]) throws {
        let refs = try store.putKVCacheRefs(
            id, blocks.map { (block: $0, location: "gpu-0") }, ttlMilliseconds: 60_000, nowMilliseconds: nowMilliseconds)
        guard let stamp = refs.first?.stamp else { return }
        enqueue(entry(id, stamp, .skipped))
    }

    func entry(_ id: SessionID, _ stamp: SessionStamp, _ payload: ReplicationEntry.Payload) -> ReplicationEntry {
        ReplicationEntry(session: id, tenant: Self.tenant, home: Self.region, stamp: stamp, payload: payload)
    }

    /// Records an expectation per data type that the standby's copy of every
    /// session equals the home's replicated state.
    func expectStandbyMatches(_ standby: StandbyReplica, _ sessions: [SessionID], seed: UInt64? = nil) throws {
        for id in sessions {
            let info = try store.sessionInfo(id)
            guard let copy = standby.session(id) else {
                Issue.record("seed \(seed.map(String.init) ?? "-"): the standby has no copy of session \(id)")
                continue
            }
            let label = "seed \(seed.map(String.init) ?? "-"), session \(id)"
            #expect(copy.turns == (try store.readTurns(id, .all).turns), "\(label): turns")
            #expect(copy.bufferBytes == info.bufferBytes, "\(label): buffer bytes")
            #expect(copy.ledger.values.sorted { $0.callID < $1.callID } == (try store.ledgerEntries(id)), "\(label): ledger")
            #expect(copy.values.values.sorted { $0.name < $1.name } == (try store.values(id)), "\(label): values")
            #expect(copy.appliedStamp == info.lastStamp, "\(label): applied stamp")
            #expect(copy.createdAtMilliseconds == info.createdAtMilliseconds, "\(label): creation time")
            #expect(standby.position(of: id)?.replicationGap == false, "\(label): replication gap")
        }
    }
}

@Suite struct ReplicationTests {
    static let sessionA = SessionID("session-a")!
    static let sessionB = SessionID("session-b")!

    /// Sends every due batch to the standby and returns its acknowledgements to
    /// the outbox, answering snapshot requests, until nothing is pending.
    static func drain(_ home: inout ReplicatedHome, into standby: inout StandbyReplica) throws {
        for _ in 0..<1_000 {
            try home.serveSnapshotRequests()
            guard home.outbox.pendingEntryCount > 0 else { return }

            home.nowMilliseconds += home.outbox.configuration.maximumBatchDelayMilliseconds
            guard let batch = home.outbox.nextBatch(nowMilliseconds: home.nowMilliseconds) else { continue }
            home.perform(home.outbox.acknowledge(standby.apply(batch)))
        }
        Issue.record("the outbox still has \(home.outbox.pendingEntryCount) entries pending after 1,000 rounds")
    }

    @Test func coalescedSessionReachesStandbyIntact() throws {
        var home = try ReplicatedHome(
            outbox: ReplicationOutbox.Configuration(
                maximumBatchEntries: 4, maximumBatchDelayMilliseconds: 10, maximumPendingEntries: 6))
        var standby = try StandbyReplica(home: ReplicatedHome.region)

        try home.createSession(Self.sessionA)
        try home.createSession(Self.sessionB)
        for index in 0..<5 {
            try home.appendTurn(Self.sessionA, TurnDraft(role: .user, content: "turn \(index)", tokens: 2))
        }
        try home.writeLedgerEntry(Self.sessionA, LedgerWrite(callID: "call-1", name: "search", status: .running))
        try home.putKVCacheRefs(Self.sessionA, blocks: [7, 8])

        // Nine entries are pending and the bound is six: session A, with eight, is coalesced.
        #expect(home.snapshotRequests == [Self.sessionA])
        try home.serveSnapshotRequests()
        #expect(home.outbox.pendingEntryCount == 2)
        #expect(home.outbox.snapshotCount == 1)

        try home.putValue(Self.sessionA, name: "mode", value: .string("draft"))
        try home.writeLedgerEntry(Self.sessionA, LedgerWrite(callID: "call-1", status: .succeeded, result: .integer(3)))
        try home.appendTurn(Self.sessionB, TurnDraft(role: .user, content: "hello", tokens: 1))

        try Self.drain(&home, into: &standby)
        try home.expectStandbyMatches(standby, [Self.sessionA, Self.sessionB])
        #expect(standby.session(Self.sessionA)?.ledger["call-1"]?.status == .succeeded)
    }

    /// What one random scenario exercised, so the test can check that the
    /// seeds reach every hard case.
    struct ScenarioCounts {
        var snapshots = 0
        var duplicateEntries = 0
        var discardedEntries = 0
        var failedBatches = 0
        var mutations = 0

        static func + (lhs: ScenarioCounts, rhs: ScenarioCounts) -> ScenarioCounts {
            ScenarioCounts(
                snapshots: lhs.snapshots + rhs.snapshots, duplicateEntries: lhs.duplicateEntries + rhs.duplicateEntries,
                discardedEntries: lhs.discardedEntries + rhs.discardedEntries, failedBatches: lhs.failedBatches + rhs.failedBatches,
                mutations: lhs.mutations + rhs.mutations)
        }
    }

    @Test func restartedStandbyIsHealedBySnapshot() throws {
        var home = try ReplicatedHome(outbox: ReplicationOutbox.Configuration(maximumBatchEntries: 8, maximumBatchDelayMilliseconds: 10))
        var standby = try StandbyReplica(home: ReplicatedHome.region)
        try home.createSession(Self.sessionA)
        try home.appendTurn(Self.sessionA, TurnDraft(role: .user, content: "before", tokens: 1))
        try Self.drain(&home, into: &standby)

        // The neighbour lost its copies; the home's outbox had dropped the acknowledged entries.
        standby = try StandbyReplica(home: ReplicatedHome.region)
        try home.appendTurn(Self.sessionA, TurnDraft(role: .user, content: "after", tokens: 1))
        try Self.drain(&home, into: &standby)

        try home.expectStandbyMatches(standby, [Self.sessionA])
        #expect(home.outbox.snapshotCount == 1)
    }

    /// Runs one seeded scenario: random mutations at the home, while the
    /// network between home and neighbour drops, duplicates, delays and
    /// reorders batches and acknowledgements. The shell treats every lost
    /// batch or acknowledgement as a failed batch.
    static func runRandomScenario(seed: UInt64) throws -> ScenarioCounts {
        var random = SplitMix64(seed: seed)
        var limits = SessionStoreLimits()
        if random.next() % 2 == 0 {
            limits.maximumTurns = 4
            limits.maximumBufferBytes = 60
            limits.dropOldestTurns = true
        }
        let smallBound = random.next() % 2 == 0
        var home = try ReplicatedHome(
            limits: limits,
            outbox: ReplicationOutbox.Configuration(
                maximumBatchEntries: smallBound ? 3 : 8, maximumBatchDelayMilliseconds: 5,
                maximumPendingEntries: smallBound ? 6 : 1_000))
        var standby = try StandbyReplica(
            home: ReplicatedHome.region,
            configuration: StandbyReplica.Configuration(limits: limits, maximumHeldEntries: smallBound ? 4 : 1_000))

        var sessions: [SessionID] = []
        var network: [ReplicationBatch] = []
        var returningAcknowledgements: [ReplicationAcknowledgement] = []
        /// Copies of batches delivered or given up on, which may still arrive late.
        var strayBatches: [ReplicationBatch] = []
        var failedBatches = 0

        func deliverOne(lossPercent: UInt64) {
            guard !network.isEmpty else { return }
            let batch = network.remove(at: Int(random.next() % UInt64(network.count)))
            if random.next() % 100 < lossPercent {
                strayBatches.append(batch)
                home.outbox.batchFailed(batch.id)
                failedBatches += 1
                return
            }

            let acknowledgement = standby.apply(batch)
            if random.next() % 100 < 10 { strayBatches.append(batch) }
            if random.next() % 100 < lossPercent {
                home.outbox.batchFailed(batch.id)
                failedBatches += 1
                return
            }
            returningAcknowledgements.insert(
                acknowledgement, at: Int(random.next() % UInt64(returningAcknowledgements.count + 1)))
        }

        func returnOneAcknowledgement() {
            guard !returningAcknowledgements.isEmpty else { return }
            let acknowledgement = returningAcknowledgements.removeFirst()
            home.perform(home.outbox.acknowledge(acknowledgement))
        }

        func redeliverStrayBatch() {
            guard !strayBatches.isEmpty else { return }
            let batch = strayBatches.remove(at: Int(random.next() % UInt64(strayBatches.count)))
            home.perform(home.outbox.acknowledge(standby.apply(batch)))
        }

        for _ in 0..<300 {
            home.nowMilliseconds += Int64(random.next() % 4)
            switch random.next() % 10 {
            case 0, 1, 2, 3:
                try mutate(&home, &sessions, &random)
            case 4, 5:
                if let batch = home.outbox.nextBatch(nowMilliseconds: home.nowMilliseconds) {
                    network.append(batch)
                }
            case 6:
                deliverOne(lossPercent: 20)
            case 7:
                returnOneAcknowledgement()
            case 8:
                redeliverStrayBatch()
            default:
                try home.serveSnapshotRequests()
            }
        }

        // Quiet the home and let the network settle with some loss left, until all is acknowledged.
        var rounds = 0
        while home.outbox.pendingEntryCount > 0 || !network.isEmpty || !returningAcknowledgements.isEmpty {
            rounds += 1
            guard rounds < 5_000 else {
                Issue.record("seed \(seed): \(home.outbox.pendingEntryCount) entries still pending after 5,000 rounds")
                break
            }
            try home.serveSnapshotRequests()
            home.nowMilliseconds += 5
            if let batch = home.outbox.nextBatch(nowMilliseconds: home.nowMilliseconds) {
                network.append(batch)
            }
            deliverOne(lossPercent: 10)
            returnOneAcknowledgement()
            if random.next() % 4 == 0 { redeliverStrayBatch() }
        }

        // Stray copies that arrive after everything settled must change nothing.
        while !strayBatches.isEmpty {
            redeliverStrayBatch()
        }

        try home.expectStandbyMatches(standby, sessions, seed: seed)
        #expect(standby.sessionCount == sessions.count, "seed \(seed): standby session count")
        #expect(home.outbox.lag(nowMilliseconds: home.nowMilliseconds).pendingEntries == 0, "seed \(seed): lag")
        return ScenarioCounts(
            snapshots: home.outbox.snapshotCount, duplicateEntries: standby.duplicateEntryCount,
            discardedEntries: standby.discardedEntryCount, failedBatches: failedBatches,
            mutations: sessions.reduce(0) { $0 + Int((try? home.store.sessionInfo($1).lastStamp.seq) ?? 0) })
    }

    /// Performs one random mutation at the home. Mutations the store rejects
    /// (ledger conflicts, full buffers) store nothing and enqueue nothing.
    static func mutate(_ home: inout ReplicatedHome, _ sessions: inout [SessionID], _ random: inout SplitMix64) throws {
        if sessions.isEmpty || (sessions.count < 4 && random.next() % 10 == 0) {
            let id = SessionID("session-\(sessions.count)")!
            try home.createSession(id)
            sessions.append(id)
            return
        }

        let id = sessions[Int(random.next() % UInt64(sessions.count))]
        do {
            switch random.next() % 5 {
            case 0, 1:
                let number = random.next() % 12
                let content = String(repeating: "x", count: Int(random.next() % 30)) + "\(number)"
                let key = random.next() % 3 == 0 ? "key-\(number)" : nil
                try home.appendTurn(id, TurnDraft(role: .user, content: content, tokens: 1, idempotencyKey: key))
            case 2:
                let call = "call-\(random.next() % 3)"
                let statuses = LedgerStatus.allCases
                let status = statuses[Int(random.next() % UInt64(statuses.count))]
                try home.writeLedgerEntry(
                    id,
                    LedgerWrite(
                        callID: call, name: "tool-\(call)", arguments: .integer(Int64(random.next() % 5)), status: status,
                        result: status.isTerminal ? .string("done") : nil))
            case 3:
                try home.putValue(id, name: "value-\(random.next() % 3)", value: .integer(Int64(random.next() % 100)))
            default:
                try home.putKVCacheRefs(id, blocks: [Int64(random.next() % 5)])
            }
        } catch let error as SessionStoreError {
            switch error.code {
            case .ledgerConflict, .limitExceeded, .idempotencyKeyReused:
                return
            case .sessionNotFound, .sessionExists, .entryNotFound, .staleEpoch, .invalidWrite, .notDurable, .reconcilePositionUnknown,
                .storeUnavailable:
                throw error
            }
        }
    }

    @Test func standbyConvergesUnderLossDuplicationAndReordering() throws {
        var counts = ScenarioCounts()
        for seed in UInt64(1)...200 {
            counts = counts + (try Self.runRandomScenario(seed: seed))
        }

        // The seeds must reach the hard cases, or the checks above prove little.
        #expect(counts.snapshots > 0)
        #expect(counts.duplicateEntries > 0)
        #expect(counts.discardedEntries > 0)
        #expect(counts.failedBatches > 0)
    }
}
