import Foundation
import Synchronization
import Testing

@testable import Homeport

/// The consensus session store on the embedded linearizable store: the
/// shared contract, then what only this store has (several regions on one
/// store, round trips, the key layout's clean-up, failures).
@Suite struct ConsensusSessionStoreTests {
    static let id = SessionStoreContract.id
    static let tenant = SessionStoreContract.tenant

    static func draft(_ content: String, key: String? = nil) -> TurnDraft {
        SessionStoreContract.draft(content, key: key)
    }

    @Test("consensus store on the embedded store meets the contract", arguments: SessionStoreContract.allCases)
    func contract(_ check: SessionStoreContract) async throws {
        try await check.check { limits, journal in
            ConsensusSessionStore(store: EmbeddedLinearizableStore(), limits: limits, journal: journal)
        }
    }

    // MARK: Regions sharing one store

    @Test func everyRegionServesEverySession() async throws {
        let shared = EmbeddedLinearizableStore()
        let east = ConsensusSessionStore(store: shared, limits: SessionStoreLimits())
        let west = ConsensusSessionStore(store: shared, limits: SessionStoreLimits())

        _ = try await east.createSession(Self.id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        let first = try await east.appendTurn(Self.id, Self.draft("from east", key: "k1"), nowMilliseconds: 1)
        // West has never seen the session, and east's cached state is stale after west writes.
        let second = try await west.appendTurn(Self.id, Self.draft("from west"), nowMilliseconds: 2)
        let third = try await east.appendTurn(Self.id, Self.draft("from east again"), nowMilliseconds: 3)

        #expect(first.turn.stamp == SessionStamp(epoch: 1, seq: 1))
        #expect(second.turn.stamp == SessionStamp(epoch: 1, seq: 2))
        #expect(third.turn.stamp == SessionStamp(epoch: 1, seq: 3))
        #expect(try await west.readTurns(Self.id, .all).turns.map(\.content) == ["from east", "from west", "from east again"])

        // A retry that reaches the other region replays the first result.
        let retry = try await west.appendTurn(Self.id, Self.draft("from east", key: "k1"), nowMilliseconds: 4)
        #expect(retry.replayed)
        #expect(retry.turn == first.turn)
        #expect(try await east.sessionInfo(Self.id) == (try await west.sessionInfo(Self.id)))

        // A ledger entry moves forward in whichever region writes it.
        _ = try await east.writeLedgerEntry(Self.id, LedgerWrite(callID: "c1", name: "search", status: .running), nowMilliseconds: 5)
        let late = try await west.writeLedgerEntry(Self.id, LedgerWrite(callID: "c1", status: .requested), nowMilliseconds: 6)
        #expect(!late.applied)
        #expect(late.entry.status == .running)
        let conflict = await SessionStoreContract.errorCode { () async throws(SessionStoreError) in
            _ = try await east.writeLedgerEntry(Self.id, LedgerWrite(callID: "c1", status: .succeeded), nowMilliseconds: 7)
            return try await west.writeLedgerEntry(Self.id, LedgerWrite(callID: "c1", status: .failed), nowMilliseconds: 8)
        }
        #expect(conflict == .ledgerConflict)

        // The session limit counts the sessions of every region.
        var limits = SessionStoreLimits()
        limits.maximumSessions = 2
        let limitedEast = ConsensusSessionStore(store: shared, limits: limits)
        let limitedWest = ConsensusSessionStore(store: shared, limits: limits)
        _ = try await limitedWest.createSession(SessionID("second")!, tenant: Self.tenant, home: "us-west", epoch: 1, nowMilliseconds: 0)
        let overLimit = await SessionStoreContract.errorCode { () async throws(SessionStoreError) in
            try await limitedEast.createSession(SessionID("third")!, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        }
        #expect(overLimit == .limitExceeded)
    }

    @Test func twoRegionsAppendingConcurrentlyKeepEveryTurnOnce() async throws {
        let shared = EmbeddedLinearizableStore()
        try await Self.appendFromTwoRegions(east: shared, west: shared, tasksPerRegion: 4, turnsPerTask: 25)
    }

    /// Appends from two stores (regions) to one session at once, each turn
    /// sent twice with its idempotency key, and checks that every turn is
    /// held exactly once with contiguous seqs and in each task's order.
    static func appendFromTwoRegions(
        east eastBackend: any LinearizableStore, west westBackend: any LinearizableStore, tasksPerRegion: Int, turnsPerTask: Int
    ) async throws {
        let regions = [
            ConsensusSessionStore(store: eastBackend, limits: SessionStoreLimits()),
            ConsensusSessionStore(store: westBackend, limits: SessionStoreLimits()),
        ]
        _ = try await regions[0].createSession(id, tenant: tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)

        let failures = SharedList<String>()
        await withTaskGroup(of: Void.self) { group in
            for (regionIndex, region) in regions.enumerated() {
                for task in 0..<tasksPerRegion {
                    group.addTask {
                        for turn in 0..<turnsPerTask {
                            let key = "r\(regionIndex)-w\(task)-t\(turn)"
                            // The retry goes to the other region, as after a failed-over request.
                            for store in [region, regions[1 - regionIndex]] {
                                do throws(SessionStoreError) {
                                    _ = try await store.appendTurn(id, draft(key, key: key), nowMilliseconds: 0)
                                } catch {
                                    failures.append("\(key): \(error)")
                                }
                            }
                        }
                    }
                }
            }
        }

        #expect(failures.all.isEmpty, "\(failures.all.prefix(3))")
        let total = 2 * tasksPerRegion * turnsPerTask
        for region in regions {
            let (turns, info) = try await region.readTurns(id, .all)
            #expect(turns.count == total)
            #expect(Set(turns.map(\.content)).count == total)
            #expect(turns.map(\.stamp.seq) == Array(1...UInt64(total)))
            #expect(info.lastStamp.seq == UInt64(total))
            for regionIndex in 0..<2 {
                for task in 0..<tasksPerRegion {
                    let own = turns.filter { $0.content.hasPrefix("r\(regionIndex)-w\(task)-") }.map(\.content)
                    #expect(own == (0..<turnsPerTask).map { "r\(regionIndex)-w\(task)-t\($0)" })
                }
            }
        }
    }

    // MARK: Round trips

    @Test func commonOperationsTakeOneRoundTrip() async throws {
        let counting = CountingLinearizableStore(EmbeddedLinearizableStore())
        let store = ConsensusSessionStore(store: counting, limits: SessionStoreLimits())
        let other = ConsensusSessionStore(store: counting, limits: SessionStoreLimits())

        let created = try await counting.counting {
            try await store.createSession(Self.id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        }
        #expect(created.roundTrips == 1)
        for index in 0..<5 {
            let append = try await counting.counting {
                try await store.appendTurn(Self.id, Self.draft("t\(index)", key: "k\(index)"), nowMilliseconds: 0)
            }
            #expect(append.roundTrips == 1, "append \(index)")
        }

        let writes: [(String, () async throws -> Void)] = [
            (
                "ledger create",
                {
                    _ = try await store.writeLedgerEntry(
                        Self.id, LedgerWrite(callID: "c", name: "t", status: .requested), nowMilliseconds: 0)
                }
            ),
            (
                "ledger update",
                { _ = try await store.writeLedgerEntry(Self.id, LedgerWrite(callID: "c", status: .running), nowMilliseconds: 0) }
            ),
            (
                "ledger no-op",
                { _ = try await store.writeLedgerEntry(Self.id, LedgerWrite(callID: "c", status: .requested), nowMilliseconds: 0) }
            ),
            ("first refs", { _ = try await store.putKVCacheRefs(Self.id, [(1, "g")], ttlMilliseconds: 100, nowMilliseconds: 0) }),
            ("more refs", { _ = try await store.putKVCacheRefs(Self.id, [(2, "g")], ttlMilliseconds: 100, nowMilliseconds: 0) }),
            ("new value", { _ = try await store.putValue(Self.id, name: "v", value: .integer(1), nowMilliseconds: 0) }),
            ("value again", { _ = try await store.putValue(Self.id, name: "v", value: .integer(2), nowMilliseconds: 0) }),
            ("replay", { _ = try await store.appendTurn(Self.id, Self.draft("t4", key: "k4"), nowMilliseconds: 0) }),
        ]
        for (name, write) in writes {
            #expect(try await counting.counting(write).roundTrips == 1, "\(name)")
        }

        // Every read is one round trip, also for a store that never saw the session.
        let reads: [(String, () async throws -> Void)] = [
            ("info", { _ = try await other.sessionInfo(Self.id) }),
            ("tail", { _ = try await other.readTurns(Self.id, .tail(2)) }),
            ("since", { _ = try await other.readTurns(Self.id, .since(3)) }),
            ("all", { _ = try await other.readTurns(Self.id, .all) }),
            ("ledger entry", { _ = try await other.ledgerEntry(Self.id, callID: "c") }),
            ("ledger", { _ = try await other.ledgerEntries(Self.id) }),
            ("refs", { _ = try await other.kvCacheRefs(Self.id, nowMilliseconds: 0) }),
            ("ref", { _ = try await other.kvCacheRef(Self.id, block: 1, nowMilliseconds: 0) }),
            ("value", { _ = try await other.value(Self.id, name: "v") }),
            ("values", { _ = try await other.values(Self.id) }),
            ("replicated state", { _ = try await other.replicatedState(Self.id) }),
            (
                "tail without cached state",
                { _ = try await ConsensusSessionStore(store: counting, limits: SessionStoreLimits()).readTurns(Self.id, .tail(2)) }
            ),
        ]
        for (name, read) in reads {
            #expect(try await counting.counting(read).roundTrips == 1, "\(name)")
        }

        // After another region wrote the session, the next write takes two:
        // the lost compare returns the current state.
        _ = try await other.appendTurn(Self.id, Self.draft("elsewhere"), nowMilliseconds: 0)
        let stale = try await counting.counting { try await store.appendTurn(Self.id, Self.draft("back"), nowMilliseconds: 0) }
        #expect(stale.roundTrips == 2)
        #expect(stale.value.turn.stamp.seq == 13)
        #expect(
            try await counting.counting { try await store.appendTurn(Self.id, Self.draft("again"), nowMilliseconds: 0) }.roundTrips == 1)

        // A store without the session in its cache reads it first.
        let fresh = ConsensusSessionStore(store: counting, limits: SessionStoreLimits())
        #expect(try await counting.counting { try await fresh.appendTurn(Self.id, Self.draft("new"), nowMilliseconds: 0) }.roundTrips == 2)
    }

    @Test func tailReadsEveryTurnWhenReconcileReordersKeys() async throws {
        let store = ConsensusSessionStore(store: EmbeddedLinearizableStore(), limits: SessionStoreLimits())
        _ = try await store.adopt(try SessionStoreContract.standbyCopy(), home: "us-west", epoch: 2, replicationGap: true)
        _ = try await store.appendTurn(Self.id, Self.draft("new"), nowMilliseconds: 0)

        // The old home's turn (1, 6) sorts after the new home's (2, 5) by
        // seq, but before it in the buffer, which orders by epoch first.
        let tail = ReconcileTail(
            session: Self.id, tenant: Self.tenant, home: "us-east", lastStamp: SessionStamp(epoch: 1, seq: 6), sinceSeq: 4,
            createdAtMilliseconds: 5,
            turns: [
                Turn(
                    stamp: SessionStamp(epoch: 1, seq: 6), role: .user, content: "lost", tokens: 1, createdAtMilliseconds: 14, metadata: [:]
                )
            ],
            ledger: [], values: [])
        #expect(try await store.mergeReconcileTail(tail, standby: nil, home: "us-west") == 1)

        #expect(try await SessionStoreContract.contents(store) == ["a", "bb", "lost", "new"])
        #expect(try await store.readTurns(Self.id, .tail(2)).turns.map(\.content) == ["lost", "new"])
        // By key, (1, 6) is the last turn; in the buffer, (2, 5) is.
        #expect(try await store.readTurns(Self.id, .tail(1)).turns.map(\.content) == ["new"])
        #expect(try await store.readTurns(Self.id, .since(5)).turns.map(\.content) == ["lost"])
        #expect(try await store.readTurns(Self.id, .since(4)).turns.map(\.content) == ["lost", "new"])

        // Another store, which has no cached state, gets the same tail.
        let other = ConsensusSessionStore(store: store.store, limits: SessionStoreLimits())
        #expect(try await other.readTurns(Self.id, .tail(1)).turns.map(\.content) == ["new"])
        let fresh = ConsensusSessionStore(store: store.store, limits: SessionStoreLimits())
        #expect(try await fresh.readTurns(Self.id, .tail(2)).turns.map(\.content) == ["lost", "new"])
    }

    // MARK: Clean-up

    /// Returns the number of keys under `prefix` in the backing store.
    static func keyCount(_ backend: EmbeddedLinearizableStore, _ prefix: String) throws -> Int {
        try backend.range(prefix: prefix).count
    }

    @Test func droppedTurnsAreDeletedOverLaterWrites() async throws {
        let backend = EmbeddedLinearizableStore()
        var limits = SessionStoreLimits()
        limits.maximumTurns = 400
        limits.maximumBufferBytes = 1000
        limits.dropOldestTurns = true
        let store = ConsensusSessionStore(store: backend, limits: limits)
        let keys = ConsensusSessionKeys(prefix: "/homeport/sessions/")
        _ = try await store.createSession(Self.id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        for index in 0..<300 {
            _ = try await store.appendTurn(Self.id, Self.draft("\(index % 10)"), nowMilliseconds: 0)
        }

        // One turn as large as the buffer drops all 300, more than one
        // transaction deletes; reads skip the turns whose keys remain.
        let large = String(repeating: "x", count: 1000)
        _ = try await store.appendTurn(Self.id, Self.draft(large), nowMilliseconds: 0)
        #expect(try await SessionStoreContract.contents(store) == [large])
        #expect(try await store.readTurns(Self.id, .tail(5)).turns.map(\.content) == [large])
        #expect(try await store.readTurns(Self.id, .since(0)).turns.map(\.content) == [large])
        let remaining = try Self.keyCount(backend, keys.turnPrefix(Self.id))
        #expect(remaining > 1)
        #expect(remaining < 301)

        // Later writes of any kind delete the rest.
        for index in 0..<3 {
            _ = try await store.putValue(Self.id, name: "v", value: .integer(Int64(index)), nowMilliseconds: 0)
        }
        #expect(try Self.keyCount(backend, keys.turnPrefix(Self.id)) == 1)
        #expect(try await store.sessionInfo(Self.id).turnCount == 1)
    }

    @Test func forgottenIdempotencyKeysAreDeleted() async throws {
        let backend = EmbeddedLinearizableStore()
        var limits = SessionStoreLimits()
        limits.maximumTurns = 2
        limits.dropOldestTurns = true
        let store = ConsensusSessionStore(store: backend, limits: limits)
        let keys = ConsensusSessionKeys(prefix: "/homeport/sessions/")
        _ = try await store.createSession(Self.id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)

        // 16 keys are kept, and forgotten ones are deleted 16 at a time.
        var maximumKeysSeen = 0
        for index in 0..<100 {
            _ = try await store.appendTurn(Self.id, Self.draft("t\(index)", key: "k\(index)"), nowMilliseconds: 0)
            maximumKeysSeen = max(maximumKeysSeen, try Self.keyCount(backend, keys.idempotencyPrefix(Self.id)))
        }
        #expect(maximumKeysSeen <= 32)
        #expect(try Self.keyCount(backend, keys.idempotencyPrefix(Self.id)) >= 16)

        // The newest keys replay or report their dropped turn; old ones append anew.
        #expect(try await store.appendTurn(Self.id, Self.draft("t99", key: "k99"), nowMilliseconds: 0).replayed)
        let dropped = await SessionStoreContract.errorCode { () async throws(SessionStoreError) in
            try await store.appendTurn(Self.id, Self.draft("t90", key: "k90"), nowMilliseconds: 0)
        }
        #expect(dropped == .limitExceeded)
        #expect(!(try await store.appendTurn(Self.id, Self.draft("t3", key: "k3"), nowMilliseconds: 0).replayed))
    }

    @Test func expiredRefsLeaveTheRecordOnNextPut() async throws {
        let backend = EmbeddedLinearizableStore()
        let store = ConsensusSessionStore(store: backend, limits: SessionStoreLimits())
        let keys = ConsensusSessionKeys(prefix: "/homeport/sessions/")
        _ = try await store.createSession(Self.id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        _ = try await store.putKVCacheRefs(Self.id, [(1, "gpu-1"), (2, "gpu-2")], ttlMilliseconds: 100, nowMilliseconds: 0)
        _ = try await store.putKVCacheRefs(Self.id, [(3, "gpu-3")], ttlMilliseconds: 100, nowMilliseconds: 200)

        #expect(try await store.kvCacheRefs(Self.id, nowMilliseconds: 250).map(\.block) == [3])
        let record = try #require(try backend.get(keys.kvCacheRefs(Self.id)))
        #expect(try ConsensusSessionCodec.decodeKVCacheRefs(record.value).keys.sorted() == [3])
    }

    // MARK: Failures

    @Test func unavailableStoreIsStoreUnavailable() async throws {
        let backend = EmbeddedLinearizableStore()
        let store = ConsensusSessionStore(store: backend, limits: SessionStoreLimits())
        _ = try await store.createSession(Self.id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        _ = try await store.appendTurn(Self.id, Self.draft("a"), nowMilliseconds: 0)

        backend.setAvailable(false)
        let operations: [(String, () async throws(SessionStoreError) -> Void)] = [
            (
                "create",
                { () async throws(SessionStoreError) in
                    _ = try await store.createSession(
                        SessionID("other")!, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
                }
            ),
            (
                "append",
                { () async throws(SessionStoreError) in _ = try await store.appendTurn(Self.id, Self.draft("b"), nowMilliseconds: 0) }
            ),
            ("read", { () async throws(SessionStoreError) in _ = try await store.readTurns(Self.id, .tail(1)) }),
            ("info", { () async throws(SessionStoreError) in _ = try await store.sessionInfo(Self.id) }),
            ("ids", { () async throws(SessionStoreError) in _ = try await store.sessionIDs() }),
            ("remove", { () async throws(SessionStoreError) in try await store.removeAllSessions() }),
        ]
        for (name, operation) in operations {
            do throws(SessionStoreError) {
                try await operation()
                Issue.record("\(name) succeeded on an unavailable store")
            } catch {
                #expect(error.code == .storeUnavailable, "\(name)")
                #expect(error.detail.contains("retry"), "\(name)")
            }
        }

        backend.setAvailable(true)
        #expect(try await store.appendTurn(Self.id, Self.draft("b"), nowMilliseconds: 0).turn.stamp.seq == 2)
        #expect(try await SessionStoreContract.contents(store) == ["a", "b"])
    }

    @Test func malformedRecordIsStoreUnavailable() async throws {
        let backend = EmbeddedLinearizableStore()
        let store = ConsensusSessionStore(store: backend, limits: SessionStoreLimits())
        let keys = ConsensusSessionKeys(prefix: "/homeport/sessions/")
        _ = try await store.createSession(Self.id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        _ = try backend.put(keys.meta(Self.id), value: Array("not a meta record".utf8), lease: nil)

        let code = await SessionStoreContract.errorCode { () async throws(SessionStoreError) in try await store.sessionInfo(Self.id) }
        #expect(code == .storeUnavailable)
        do throws(SessionStoreError) {
            _ = try await store.appendTurn(Self.id, Self.draft("a"), nowMilliseconds: 0)
            Issue.record("an append to a damaged session succeeded")
        } catch {
            #expect(error.code == .storeUnavailable)
            #expect(error.detail.contains("meta record"))
        }
    }

    @Test func keysTooLongForTheStoreAreRejected() async throws {
        let store = ConsensusSessionStore(store: EmbeddedLinearizableStore(), limits: SessionStoreLimits())
        _ = try await store.createSession(Self.id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        let long = String(repeating: "n", count: LinearizableStoreLimits.maximumKeyBytes)

        let put = await SessionStoreContract.errorCode { () async throws(SessionStoreError) in
            try await store.putValue(Self.id, name: long, value: .null, nowMilliseconds: 0)
        }
        #expect(put == .limitExceeded)
        let read = await SessionStoreContract.errorCode { () async throws(SessionStoreError) in try await store.value(Self.id, name: long) }
        #expect(read == .entryNotFound)
        let ledger = await SessionStoreContract.errorCode { () async throws(SessionStoreError) in
            try await store.ledgerEntry(Self.id, callID: long)
        }
        #expect(ledger == .entryNotFound)
        #expect(try await store.sessionInfo(Self.id).lastStamp.seq == 0)
    }

    // MARK: Parts

    @Test func codecRoundTripsAndRejectsDamage() throws {
        var meta = ConsensusSessionMeta(tenant: Self.tenant, home: "eu-west", epoch: 3, createdAtMilliseconds: -5)
        meta.lastSeq = UInt64.max
        meta.replicationGap = true
        meta.adoptedPosition = SessionStamp(epoch: 2, seq: 9)
        meta.turns = [.init(stamp: SessionStamp(epoch: 3, seq: 1), contentBytes: 1 << 20)]
        meta.droppedTurns = [SessionStamp(epoch: 1, seq: 0)]
        meta.idempotencyNextOrdinal = 300
        let encoded = ConsensusSessionCodec.encodeMeta(meta)
        #expect(try ConsensusSessionCodec.decodeMeta(encoded) == meta)

        let turn = Turn(
            stamp: SessionStamp(epoch: 1, seq: 2), role: .tool, content: "\u{01}\"é😀", tokens: -1, createdAtMilliseconds: Int64.min,
            metadata: ["b": "2", "a": ""], idempotencyKey: "k", recovered: true)
        #expect(try ConsensusSessionCodec.decodeTurn(ConsensusSessionCodec.encodeTurn(turn)) == turn)

        // A record cut short, with bytes left over, of another format or with
        // a count past its end throws instead of trapping.
        let damaged: [[UInt8]] = [[], Array(encoded.dropLast()), encoded + [0], [2] + encoded.dropFirst(), [1, 0x80], [1, 5, 0xFF]]
        for bytes in damaged {
            #expect(throws: ConsensusRecordError.self, "\(bytes.prefix(8))") { try ConsensusSessionCodec.decodeMeta(bytes) }
        }
        #expect(throws: ConsensusRecordError.self) { try ConsensusSessionCodec.decodeKVCacheRefs([1, 0xFF, 0xFF, 0xFF, 0x0F]) }
    }

    @Test func cacheEvictsLeastRecentlyUsed() {
        let cache = SessionStateCache(limits: ConsensusSessionStore.CacheLimits(maximumSessions: 2, maximumBytes: 10_000))
        let meta = ConsensusSessionMeta(tenant: Self.tenant, home: "us-east", epoch: 1, createdAtMilliseconds: 0)
        let ids = ["a", "b", "c"].map { SessionID($0)! }
        cache.store(ids[0], KnownSessionState(meta: meta, metaRevision: 1, metaBytes: 10))
        cache.store(ids[1], KnownSessionState(meta: meta, metaRevision: 2, metaBytes: 10))
        #expect(cache.state(ids[0]) != nil)
        cache.store(ids[2], KnownSessionState(meta: meta, metaRevision: 3, metaBytes: 10))
        #expect(cache.state(ids[1]) == nil)
        #expect(cache.state(ids[0]) != nil)
        #expect(cache.count == 2)

        // An older state never replaces a newer one; at the same revision the records combine.
        cache.store(ids[0], KnownSessionState(meta: meta, metaRevision: 0, metaBytes: 10, records: ["x": nil]))
        #expect(cache.state(ids[0])?.metaRevision == 1)
        cache.store(ids[0], KnownSessionState(meta: meta, metaRevision: 1, metaBytes: 10, records: ["y": [1]]))
        cache.store(ids[0], KnownSessionState(meta: meta, metaRevision: 1, metaBytes: 10, records: ["z": nil]))
        #expect(cache.state(ids[0])?.records.keys.sorted() == ["y", "z"])

        // A state over the byte budget evicts everything older, then itself.
        cache.store(ids[1], KnownSessionState(meta: meta, metaRevision: 4, metaBytes: 20_000))
        #expect(cache.count == 0)
    }
}

/// The consensus session store on a real single-member etcd that each test
/// starts on loopback (see `EtcdServer`). The tests run one at a time so that
/// they add one etcd process to the machine's load, not dozens.
@Suite(.serialized, .timeLimit(.minutes(2))) struct ConsensusSessionStoreEtcdTests {
    static let id = SessionStoreContract.id

    /// Returns a client of the server. Two request threads are enough for
    /// these tests, and keep the many clients a run makes from piling up
    /// threads, since an `EtcdLinearizableStore` starts its threads at once
    /// and never stops them.
    static func etcdStore(_ server: EtcdServer) throws -> EtcdLinearizableStore {
        var configuration = EtcdLinearizableStore.Configuration(endpoints: [server.endpoint])
        configuration.maximumConcurrentRequests = 2
        return try EtcdLinearizableStore(configuration: configuration)
    }

    @Test("consensus store on etcd meets the contract", arguments: SessionStoreContract.allCases)
    func contract(_ check: SessionStoreContract) async throws {
        let server = try await EtcdServer.start()
        defer { server.stop() }
        let backend = try Self.etcdStore(server)
        let prefixes = Atomic<Int>(0)
        try await check.check { limits, journal in
            let prefix = "/test\(prefixes.add(1, ordering: .relaxed).newValue)/"
            return ConsensusSessionStore(store: backend, limits: limits, keyPrefix: prefix, journal: journal)
        }
    }

    @Test func twoRegionsAppendingConcurrentlyKeepEveryTurnOnce() async throws {
        let server = try await EtcdServer.start()
        defer { server.stop() }
        // Each region has its own etcd client, as separate processes would.
        try await ConsensusSessionStoreTests.appendFromTwoRegions(
            east: try Self.etcdStore(server), west: try Self.etcdStore(server), tasksPerRegion: 3, turnsPerTask: 20)
    }

    @Test func requestOverEtcdLimitIsLimitExceeded() async throws {
        let server = try await EtcdServer.start()
        defer { server.stop() }
        var limits = SessionStoreLimits()
        limits.maximumTurnBytes = 4 << 20
        limits.maximumBufferBytes = 64 << 20
        let store = ConsensusSessionStore(store: try Self.etcdStore(server), limits: limits)
        _ = try await store.createSession(Self.id, tenant: SessionStoreContract.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)

        // A record just under 1.5 MiB passes the client's value check, but the
        // whole request is over etcd's default 1.5 MiB limit; 2 MiB fails the
        // client's check first.
        for size in [1_572_800, 2 << 20] {
            do throws(SessionStoreError) {
                _ = try await store.appendTurn(Self.id, SessionStoreContract.draft(String(repeating: "a", count: size)), nowMilliseconds: 0)
                Issue.record("an append of \(size) bytes succeeded")
            } catch {
                #expect(error.code == .limitExceeded, "\(size) bytes")
                #expect(error.detail.contains("size limit"), "\(size) bytes")
            }
        }
        #expect(try await store.sessionInfo(Self.id).lastStamp.seq == 0)

        // A turn of the default maximum (1 MiB) fits, even one of control
        // characters that JSON would escape to six bytes each.
        let maximum = String(repeating: "\u{01}", count: SessionStoreLimits().maximumTurnBytes)
        let stored = try await store.appendTurn(Self.id, SessionStoreContract.draft(maximum, key: "big"), nowMilliseconds: 0)
        #expect(stored.turn.stamp.seq == 1)
        #expect(try await store.readTurns(Self.id, .tail(1)).turns.first?.content == maximum)
        #expect(try await store.appendTurn(Self.id, SessionStoreContract.draft(maximum, key: "big"), nowMilliseconds: 0).replayed)
    }

    @Test func stoppedEtcdIsStoreUnavailable() async throws {
        let server = try await EtcdServer.start()
        let store = ConsensusSessionStore(store: try Self.etcdStore(server), limits: SessionStoreLimits())
        _ = try await store.createSession(Self.id, tenant: SessionStoreContract.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        server.stop()

        let append = await SessionStoreContract.errorCode { () async throws(SessionStoreError) in
            try await store.appendTurn(Self.id, SessionStoreContract.draft("a"), nowMilliseconds: 0)
        }
        #expect(append == .storeUnavailable)
        let read = await SessionStoreContract.errorCode { () async throws(SessionStoreError) in try await store.readTurns(Self.id, .all) }
        #expect(read == .storeUnavailable)
    }
}
