import Synchronization
import Testing

@testable import Homeport

/// A store under test and the means to drive it.
///
/// The contract checks compare revisions before and after their own writes,
/// so a server shared by several checks must run them one at a time (the
/// `.serialized` trait) or give each check its own server.
struct LinearizableStoreFixture: Sendable {
    let store: any LinearizableStore
    /// Moves the store's time forward by at least the duration: a
    /// `ManualClock` advance for the embedded store, a real sleep for a server.
    let advanceTime: @Sendable (Duration) async throws -> Void
    /// Cuts the store off (false) or reconnects it (true). Nil when the
    /// implementation cannot simulate a partition, which skips that check.
    let setAvailable: (@Sendable (Bool) async throws -> Void)?
    /// Prepended to every key a check writes, so checks on a shared server do not collide.
    let keyPrefix: String

    func key(_ name: String) -> String { keyPrefix + name }
}

/// The contract of `LinearizableStore`, one case per check. A suite for an
/// implementation runs every case with a factory for that implementation,
/// as `LinearizableStoreTests.embeddedStore` does.
enum LinearizableStoreContract: String, CaseIterable, Sendable {
    case revisionGrowsByOnePerWrite
    case getOfAbsentKeyReturnsNil
    case putAndGetRoundTrip
    case deleteRemovesKey
    case rangeReturnsPrefixInByteOrder
    case compareAndSwapCreateHasOneWinner
    case compareAndSwapUpdateHasOneWinner
    case staleCompareAndSwapReturnsCurrent
    case createOnExistingKeyFails
    case transactionRunsSuccessBranch
    case transactionRunsFailureBranch
    case comparesOnPresentAndAbsentKeys
    case versionLessCapsPutCount
    case transactionRangeReadsInterval
    case duplicateWritesInBranchRejected
    case missingLeaseLeavesStoreUnchanged
    case leaseKeysVanishAfterTTL
    case keepAliveExtendsLease
    case keepAliveAfterExpiryThrows
    case revokeDeletesAttachedKeys
    case leaseTimeToLiveListsKeys
    case putMovesKeyBetweenLeases
    case oversizedKeyAndValueRejected
    case invalidArgumentsRejected
    case unavailableStoreRejectsEveryCall

    /// Runs this check on a fresh fixture from `makeFixture`.
    func check(with makeFixture: () async throws -> LinearizableStoreFixture) async throws {
        let fixture = try await makeFixture()

        switch self {
        case .revisionGrowsByOnePerWrite: try await Self.revisionGrowsByOnePerWrite(fixture)
        case .getOfAbsentKeyReturnsNil: try await Self.getOfAbsentKeyReturnsNil(fixture)
        case .putAndGetRoundTrip: try await Self.putAndGetRoundTrip(fixture)
        case .deleteRemovesKey: try await Self.deleteRemovesKey(fixture)
        case .rangeReturnsPrefixInByteOrder: try await Self.rangeReturnsPrefixInByteOrder(fixture)
        case .compareAndSwapCreateHasOneWinner: try await Self.compareAndSwapCreateHasOneWinner(fixture)
        case .compareAndSwapUpdateHasOneWinner: try await Self.compareAndSwapUpdateHasOneWinner(fixture)
        case .staleCompareAndSwapReturnsCurrent: try await Self.staleCompareAndSwapReturnsCurrent(fixture)
        case .createOnExistingKeyFails: try await Self.createOnExistingKeyFails(fixture)
        case .transactionRunsSuccessBranch: try await Self.transactionRunsSuccessBranch(fixture)
        case .transactionRunsFailureBranch: try await Self.transactionRunsFailureBranch(fixture)
        case .comparesOnPresentAndAbsentKeys: try await Self.comparesOnPresentAndAbsentKeys(fixture)
        case .versionLessCapsPutCount: try await Self.versionLessCapsPutCount(fixture)
        case .transactionRangeReadsInterval: try await Self.transactionRangeReadsInterval(fixture)
        case .duplicateWritesInBranchRejected: try await Self.duplicateWritesInBranchRejected(fixture)
        case .missingLeaseLeavesStoreUnchanged: try await Self.missingLeaseLeavesStoreUnchanged(fixture)
        case .leaseKeysVanishAfterTTL: try await Self.leaseKeysVanishAfterTTL(fixture)
        case .keepAliveExtendsLease: try await Self.keepAliveExtendsLease(fixture)
        case .keepAliveAfterExpiryThrows: try await Self.keepAliveAfterExpiryThrows(fixture)
        case .revokeDeletesAttachedKeys: try await Self.revokeDeletesAttachedKeys(fixture)
        case .leaseTimeToLiveListsKeys: try await Self.leaseTimeToLiveListsKeys(fixture)
        case .putMovesKeyBetweenLeases: try await Self.putMovesKeyBetweenLeases(fixture)
        case .oversizedKeyAndValueRejected: try await Self.oversizedKeyAndValueRejected(fixture)
        case .invalidArgumentsRejected: try await Self.invalidArgumentsRejected(fixture)
        case .unavailableStoreRejectsEveryCall: try await Self.unavailableStoreRejectsEveryCall(fixture)
        }
    }

    /// True for the checks that call `advanceTime`. A server store has to
    /// sleep through them, so its suite runs these checks in parallel, each
    /// on its own server.
    var advancesTime: Bool {
        switch self {
        case .leaseKeysVanishAfterTTL, .keepAliveExtendsLease, .keepAliveAfterExpiryThrows, .leaseTimeToLiveListsKeys,
            .unavailableStoreRejectsEveryCall:
            return true
        case .revisionGrowsByOnePerWrite, .getOfAbsentKeyReturnsNil, .putAndGetRoundTrip, .deleteRemovesKey,
            .rangeReturnsPrefixInByteOrder, .compareAndSwapCreateHasOneWinner, .compareAndSwapUpdateHasOneWinner,
            .staleCompareAndSwapReturnsCurrent, .createOnExistingKeyFails, .transactionRunsSuccessBranch,
            .transactionRunsFailureBranch, .comparesOnPresentAndAbsentKeys, .versionLessCapsPutCount, .transactionRangeReadsInterval,
            .duplicateWritesInBranchRejected,
            .missingLeaseLeavesStoreUnchanged, .revokeDeletesAttachedKeys, .putMovesKeyBetweenLeases,
            .oversizedKeyAndValueRejected, .invalidArgumentsRejected:
            return false
        }
    }

    /// The TTL the lease checks grant. Whole seconds and well above etcd's
    /// minimum TTL, so a server grants it unchanged.
    static let leaseTTL: Duration = .seconds(10)

    /// The number of concurrent compare-and-swap contenders.
    static let contenders = 50

    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    /// Grants a lease and revokes it, returning an id that names no lease.
    static func revokedLeaseID(_ store: any LinearizableStore) async throws -> LeaseID {
        let lease = try await store.grantLease(ttl: leaseTTL)
        try await store.revokeLease(lease.id)
        return lease.id
    }

    static func revisionGrowsByOnePerWrite(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let (a, b, c, d) = (fixture.key("a"), fixture.key("b"), fixture.key("c"), fixture.key("d"))
        let start = try await store.currentRevision()

        let firstPut = try await store.put(a, value: bytes("1"))
        let secondPut = try await store.put(b, value: bytes("2"))
        let overwrite = try await store.put(a, value: bytes("3"))
        #expect(firstPut == start + 1)
        #expect(secondPut == start + 2)
        #expect(overwrite == start + 3)

        let delete = try await store.delete(a)
        #expect(delete.revision == start + 4)
        #expect(delete.previous?.value == bytes("3"))

        // Deleting an absent key writes nothing.
        let deleteAbsent = try await store.delete(a)
        #expect(deleteAbsent.revision == start + 4)
        #expect(deleteAbsent.previous == nil)

        // Two puts in one transaction share one revision.
        let twoPuts = try await store.transaction(
            compares: [], success: [.put(c, value: bytes("c")), .put(d, value: bytes("d"))], failure: [])
        #expect(twoPuts.revision == start + 5)
        #expect(try await store.get(c)?.modRevision == start + 5)
        #expect(try await store.get(d)?.modRevision == start + 5)

        // Transactions that only read, or whose branch is empty, write nothing.
        let readOnly = try await store.transaction(compares: [], success: [.get(c), .get(a)], failure: [])
        #expect(readOnly.revision == start + 5)
        let failedCompare = try await store.transaction(compares: [.exists(a)], success: [.put(a, value: bytes("x"))], failure: [])
        #expect(!failedCompare.succeeded)
        #expect(failedCompare.revision == start + 5)

        #expect(try await store.currentRevision() == start + 5)
    }

    static func getOfAbsentKeyReturnsNil(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let revision = try await store.currentRevision()

        #expect(try await store.get(fixture.key("never-written")) == nil)
        #expect(try await store.currentRevision() == revision)
    }

    static func putAndGetRoundTrip(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let key = fixture.key("round-trip")

        let created = try await store.put(key, value: bytes("first"))
        let afterCreate = try #require(try await store.get(key))
        #expect(afterCreate.key == key)
        #expect(afterCreate.value == bytes("first"))
        #expect(afterCreate.createRevision == created)
        #expect(afterCreate.modRevision == created)
        #expect(afterCreate.version == 1)
        #expect(afterCreate.lease == nil)

        let updated = try await store.put(key, value: [0, 255, 128])
        let afterUpdate = try #require(try await store.get(key))
        #expect(afterUpdate.value == [0, 255, 128])
        #expect(afterUpdate.createRevision == created)
        #expect(afterUpdate.modRevision == updated)
        #expect(afterUpdate.version == 2)

        // An empty value is a present key, not an absent one.
        let emptyKey = fixture.key("empty-value")
        _ = try await store.put(emptyKey, value: [])
        let empty = try #require(try await store.get(emptyKey))
        #expect(empty.value == [])
        #expect(empty.version == 1)
    }

    static func deleteRemovesKey(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let key = fixture.key("deleted")
        let firstCreate = try await store.put(key, value: bytes("old"))
        _ = try await store.put(key, value: bytes("older"))

        let delete = try await store.delete(key)
        #expect(delete.previous?.value == bytes("older"))
        #expect(delete.previous?.version == 2)
        #expect(try await store.get(key) == nil)

        // A put after the delete starts a new life: new createRevision, version 1.
        let secondCreate = try await store.put(key, value: bytes("new"))
        let recreated = try #require(try await store.get(key))
        #expect(recreated.createRevision == secondCreate)
        #expect(recreated.createRevision != firstCreate)
        #expect(recreated.version == 1)
    }

    static func rangeReturnsPrefixInByteOrder(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store

        // Written out of order. "Z" (0x5A) sorts before "a" (0x61), and "é"
        // (0xC3 0xA9 in UTF-8) after "z".
        for name in ["p/b", "p/é", "p/a", "q/a", "p/c/1", "p/Z", "p"] {
            _ = try await store.put(fixture.key(name), value: bytes(name))
        }

        let inRange = try await store.range(prefix: fixture.key("p/"))
        #expect(inRange.map(\.key) == ["p/Z", "p/a", "p/b", "p/c/1", "p/é"].map(fixture.key))
        #expect(inRange.map(\.value) == ["p/Z", "p/a", "p/b", "p/c/1", "p/é"].map(bytes))

        #expect(try await store.range(prefix: fixture.key("p/c/")).map(\.key) == [fixture.key("p/c/1")])
        #expect(try await store.range(prefix: fixture.key("p/zz")).isEmpty)
        #expect(try await store.range(prefix: fixture.key("")).count == 7)
    }

    static func compareAndSwapCreateHasOneWinner(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let key = fixture.key("takeover")

        let results = try await withThrowingTaskGroup(of: CompareAndSwapResult.self) { group in
            for contender in 0..<contenders {
                group.addTask {
                    try await store.compareAndSwap(key: key, expectedModRevision: 0, newValue: bytes("contender-\(contender)"))
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }

        let winners = results.filter(\.succeeded)
        #expect(results.count == contenders)
        #expect(winners.count == 1)
        let winner = try #require(winners.first)
        let stored = try #require(try await store.get(key))
        #expect(stored.value == winner.current?.value)
        #expect(stored.modRevision == winner.revision)
        #expect(stored.version == 1)

        // A loser failed because the winner had written, so it saw the winner's value.
        for loser in results where !loser.succeeded {
            #expect(loser.current?.value == stored.value)
            #expect(loser.current?.modRevision == stored.modRevision)
        }
    }

    static func compareAndSwapUpdateHasOneWinner(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let key = fixture.key("quota")
        let readRevision = try await store.put(key, value: bytes("start"))

        let results = try await withThrowingTaskGroup(of: CompareAndSwapResult.self) { group in
            for contender in 0..<contenders {
                group.addTask {
                    try await store.compareAndSwap(
                        key: key, expectedModRevision: readRevision, newValue: bytes("contender-\(contender)"))
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }

        #expect(results.filter(\.succeeded).count == 1)
        let stored = try #require(try await store.get(key))
        #expect(stored.version == 2)
        #expect(stored.modRevision == readRevision + 1)
        #expect(try await store.currentRevision() == readRevision + 1)
    }

    static func staleCompareAndSwapReturnsCurrent(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let key = fixture.key("record")
        let staleRevision = try await store.put(key, value: bytes("v1"))
        let currentRevision = try await store.put(key, value: bytes("v2"))

        let stale = try await store.compareAndSwap(key: key, expectedModRevision: staleRevision, newValue: bytes("v3"))
        #expect(!stale.succeeded)
        #expect(stale.revision == currentRevision)
        #expect(stale.current?.value == bytes("v2"))
        #expect(stale.current?.modRevision == currentRevision)
        #expect(try await store.get(key)?.value == bytes("v2"))

        // Retrying from the returned modRevision succeeds.
        let retryFrom = try #require(stale.current?.modRevision)
        let retry = try await store.compareAndSwap(key: key, expectedModRevision: retryFrom, newValue: bytes("v3"))
        #expect(retry.succeeded)
        #expect(retry.revision == currentRevision + 1)
        #expect(retry.current?.value == bytes("v3"))
        #expect(retry.current?.modRevision == retry.revision)
        #expect(retry.current?.version == 3)
    }

    static func createOnExistingKeyFails(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let key = fixture.key("existing")
        let written = try await store.put(key, value: bytes("held"))

        let create = try await store.compareAndSwap(key: key, expectedModRevision: 0, newValue: bytes("mine"))
        #expect(!create.succeeded)
        #expect(create.current?.value == bytes("held"))
        #expect(create.current?.modRevision == written)
        #expect(try await store.get(key)?.value == bytes("held"))

        // A compare-and-swap on an absent key with a non-zero revision fails
        // and reports the key as absent.
        let absent = try await store.compareAndSwap(key: fixture.key("absent"), expectedModRevision: written, newValue: bytes("x"))
        #expect(!absent.succeeded)
        #expect(absent.current == nil)
        #expect(try await store.get(fixture.key("absent")) == nil)
    }

    static func transactionRunsSuccessBranch(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let (a, b, marker) = (fixture.key("a"), fixture.key("b"), fixture.key("failure-ran"))
        let written = try await store.put(a, value: bytes("1"))

        let result = try await store.transaction(
            compares: [.exists(a), .absent(b), .value(a, equals: bytes("1")), .modRevision(a, equals: written), .version(a, equals: 1)],
            success: [.put(b, value: bytes("2")), .delete(a), .get(b), .get(a)],
            failure: [.put(marker, value: bytes("x"))]
        )

        #expect(result.succeeded)
        #expect(result.revision == written + 1)
        try #require(result.results.count == 4)
        #expect(result.results[0] == .put(revision: written + 1))
        #expect(
            result.results[1]
                == .delete(
                    previous: KeyValue(key: a, value: bytes("1"), createRevision: written, modRevision: written, version: 1, lease: nil)))
        #expect(
            result.results[2]
                == .get(KeyValue(key: b, value: bytes("2"), createRevision: written + 1, modRevision: written + 1, version: 1, lease: nil)))
        #expect(result.results[3] == .get(nil))

        #expect(try await store.get(a) == nil)
        #expect(try await store.get(b)?.value == bytes("2"))
        #expect(try await store.get(marker) == nil)
    }

    static func transactionRunsFailureBranch(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let (a, c, marker) = (fixture.key("a"), fixture.key("c"), fixture.key("success-ran"))
        let written = try await store.put(a, value: bytes("1"))

        let result = try await store.transaction(
            compares: [.exists(a), .value(a, equals: bytes("2"))],
            success: [.put(marker, value: bytes("x"))],
            failure: [.get(a), .put(c, value: bytes("3"))]
        )

        #expect(!result.succeeded)
        #expect(result.revision == written + 1)
        try #require(result.results.count == 2)
        #expect(
            result.results[0]
                == .get(KeyValue(key: a, value: bytes("1"), createRevision: written, modRevision: written, version: 1, lease: nil)))
        #expect(result.results[1] == .put(revision: written + 1))

        #expect(try await store.get(marker) == nil)
        #expect(try await store.get(c)?.value == bytes("3"))
    }

    static func comparesOnPresentAndAbsentKeys(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let (present, absent) = (fixture.key("present"), fixture.key("absent"))
        _ = try await store.put(present, value: bytes("v"))
        let written = try await store.put(present, value: bytes("w"))

        let cases: [(compare: TransactionCompare, holds: Bool)] = [
            (.exists(present), true),
            (.absent(present), false),
            (.modRevision(present, equals: written), true),
            (.modRevision(present, equals: written - 1), false),
            (.modRevision(present, equals: 0), false),
            (.value(present, equals: bytes("w")), true),
            (.value(present, equals: bytes("v")), false),
            (.version(present, equals: 2), true),
            (.version(present, equals: 1), false),
            (.exists(absent), false),
            (.absent(absent), true),
            (.modRevision(absent, equals: 0), true),
            (.version(absent, equals: 0), true),
            // An absent key has no value, not even an empty one.
            (.value(absent, equals: []), false),
        ]

        for (compare, holds) in cases {
            let result = try await store.transaction(compares: [compare], success: [], failure: [])
            #expect(result.succeeded == holds, "\(compare)")
        }

        // Compares are a conjunction: one false compare fails the transaction.
        let mixed = try await store.transaction(compares: [.exists(present), .exists(absent)], success: [], failure: [])
        #expect(!mixed.succeeded)
    }

    static func versionLessCapsPutCount(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let (counter, marker) = (fixture.key("counter"), fixture.key("marker"))

        // An absent key has version 0, so it is below any positive bound.
        #expect(try await store.transaction(compares: [.versionLess(counter, than: 1)], success: [], failure: []).succeeded)
        #expect(!(try await store.transaction(compares: [.versionLess(counter, than: 0)], success: [], failure: []).succeeded))

        // Each successful transaction puts the counter once, so three puts fit under a bound of 3.
        var outcomes: [Bool] = []
        for index in 0..<5 {
            let result = try await store.transaction(
                compares: [.versionLess(counter, than: 3)], success: [.put(counter, value: bytes("\(index)"))],
                failure: [.put(marker, value: bytes("\(index)"))])
            outcomes.append(result.succeeded)
        }
        #expect(outcomes == [true, true, true, false, false])
        #expect(try await store.get(counter)?.version == 3)
        #expect(try await store.get(marker)?.value == bytes("4"))
    }

    static func transactionRangeReadsInterval(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        for name in ["r/a", "r/b", "r/c", "r/d", "rx", "s/a"] {
            _ = try await store.put(fixture.key(name), value: bytes(name))
        }
        let prefix = fixture.key("r/")

        func names(_ range: KeyRange) async throws -> [String] {
            let result = try await store.transaction(compares: [], success: [.range(range)], failure: [])
            guard case .range(let keyValues)? = result.results.first else {
                Issue.record("a range operation returned \(result.results)")
                return []
            }
            return keyValues.map { String(decoding: $0.value, as: UTF8.self) }
        }

        #expect(try await names(KeyRange(prefix: prefix)) == ["r/a", "r/b", "r/c", "r/d"])
        #expect(try await names(KeyRange(prefix: prefix, start: fixture.key("r/b"))) == ["r/b", "r/c", "r/d"])
        #expect(try await names(KeyRange(prefix: prefix, start: fixture.key("r/bb"))) == ["r/c", "r/d"])
        #expect(try await names(KeyRange(prefix: prefix, limit: 2)) == ["r/a", "r/b"])
        #expect(try await names(KeyRange(prefix: prefix, limit: 2, descending: true)) == ["r/d", "r/c"])
        #expect(try await names(KeyRange(prefix: prefix, start: fixture.key("r/c"), descending: true)) == ["r/d", "r/c"])
        #expect(try await names(KeyRange(prefix: prefix, limit: 10, descending: true)) == ["r/d", "r/c", "r/b", "r/a"])
        #expect(try await names(KeyRange(prefix: fixture.key("none/"))).isEmpty)
        #expect(try await names(KeyRange(prefix: prefix, start: fixture.key("r/z"))).isEmpty)

        // A range sees the writes before it in its branch, at one revision with the compares.
        let mixed = try await store.transaction(
            compares: [.exists(fixture.key("r/a"))],
            success: [.delete(fixture.key("r/a")), .put(fixture.key("r/e"), value: bytes("r/e")), .range(KeyRange(prefix: prefix))],
            failure: [])
        #expect(mixed.succeeded)
        guard case .range(let keyValues)? = mixed.results.last else {
            Issue.record("the range's result is missing: \(mixed.results)")
            return
        }
        #expect(keyValues.map(\.key) == ["r/b", "r/c", "r/d", "r/e"].map(fixture.key))
        #expect(keyValues.last?.modRevision == mixed.revision)

        // A start outside the prefix and a limit below 1 are invalid, and change nothing.
        let revision = try await store.currentRevision()
        for range in [KeyRange(prefix: prefix, start: fixture.key("s/a")), KeyRange(prefix: prefix, limit: 0)] {
            let error = await #expect(throws: LinearizableStoreError.self) {
                try await store.transaction(compares: [], success: [.put(fixture.key("r/f"), value: [1]), .range(range)], failure: [])
            }
            #expect(error?.code == .invalidArgument, "\(range)")
        }
        #expect(try await store.currentRevision() == revision)
    }

    static func duplicateWritesInBranchRejected(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let key = fixture.key("twice")
        let revision = try await store.currentRevision()

        let putAndDelete = await #expect(throws: LinearizableStoreError.self) {
            try await store.transaction(compares: [], success: [.put(key, value: bytes("1")), .delete(key)], failure: [])
        }
        #expect(putAndDelete?.code == .invalidArgument)

        // The request is rejected even when the duplicate is in the branch that would not run.
        let inFailureBranch = await #expect(throws: LinearizableStoreError.self) {
            try await store.transaction(
                compares: [], success: [], failure: [.put(key, value: bytes("1")), .put(key, value: bytes("2"))])
        }
        #expect(inFailureBranch?.code == .invalidArgument)

        #expect(try await store.get(key) == nil)
        #expect(try await store.currentRevision() == revision)

        // A put and a get of the same key is not a duplicate write.
        let putThenGet = try await store.transaction(compares: [], success: [.put(key, value: bytes("1")), .get(key)], failure: [])
        #expect(
            putThenGet.results.last
                == .get(
                    KeyValue(key: key, value: bytes("1"), createRevision: revision + 1, modRevision: revision + 1, version: 1, lease: nil)))
    }

    static func missingLeaseLeavesStoreUnchanged(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let (a, b) = (fixture.key("a"), fixture.key("b"))
        let missing = try await revokedLeaseID(store)
        let revision = try await store.currentRevision()

        let put = await #expect(throws: LinearizableStoreError.self) {
            try await store.put(a, value: bytes("1"), lease: missing)
        }
        #expect(put?.code == .leaseNotFound)

        // The first put names no lease, but the transaction fails as a whole.
        let transaction = await #expect(throws: LinearizableStoreError.self) {
            try await store.transaction(
                compares: [], success: [.put(a, value: bytes("1")), .put(b, value: bytes("2"), lease: missing)], failure: [])
        }
        #expect(transaction?.code == .leaseNotFound)
        #expect(transaction?.message.contains(missing.description) == true)

        #expect(try await store.get(a) == nil)
        #expect(try await store.get(b) == nil)
        #expect(try await store.currentRevision() == revision)
    }

    static func leaseKeysVanishAfterTTL(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let (a, b, unleased) = (fixture.key("a"), fixture.key("b"), fixture.key("unleased"))
        let lease = try await store.grantLease(ttl: leaseTTL)
        #expect(lease.ttl == leaseTTL)

        _ = try await store.put(a, value: bytes("1"), lease: lease.id)
        _ = try await store.put(b, value: bytes("2"), lease: lease.id)
        _ = try await store.put(unleased, value: bytes("3"))
        #expect(try await store.get(a)?.lease == lease.id)

        try await fixture.advanceTime(leaseTTL / 2)
        #expect(try await store.get(a) != nil)
        let beforeExpiry = try await store.currentRevision()

        try await fixture.advanceTime(leaseTTL / 2 + .seconds(1))
        #expect(try await store.get(a) == nil)
        #expect(try await store.get(b) == nil)
        #expect(try await store.get(unleased)?.value == bytes("3"))

        // Both keys went in one revision.
        #expect(try await store.currentRevision() == beforeExpiry + 1)

        let timeToLive = await #expect(throws: LinearizableStoreError.self) {
            try await store.leaseTimeToLive(lease.id)
        }
        #expect(timeToLive?.code == .leaseNotFound)
    }

    static func keepAliveExtendsLease(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let key = fixture.key("region-lease")
        let lease = try await store.grantLease(ttl: leaseTTL)
        _ = try await store.put(key, value: bytes("us-east"), lease: lease.id)

        try await fixture.advanceTime(.seconds(6))
        let remaining = try await store.keepAlive(lease.id)
        #expect(remaining == lease.ttl)

        // 12 s after the grant, but only 6 s after the keep-alive.
        try await fixture.advanceTime(.seconds(6))
        #expect(try await store.get(key)?.value == bytes("us-east"))

        // 11 s after the keep-alive.
        try await fixture.advanceTime(.seconds(5))
        #expect(try await store.get(key) == nil)
    }

    static func keepAliveAfterExpiryThrows(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let lease = try await store.grantLease(ttl: leaseTTL)

        try await fixture.advanceTime(leaseTTL + .seconds(1))

        let keepAlive = await #expect(throws: LinearizableStoreError.self) {
            try await store.keepAlive(lease.id)
        }
        #expect(keepAlive?.code == .leaseNotFound)
        #expect(keepAlive?.message.contains(lease.id.description) == true)

        let revoke = await #expect(throws: LinearizableStoreError.self) {
            try await store.revokeLease(lease.id)
        }
        #expect(revoke?.code == .leaseNotFound)
    }

    static func revokeDeletesAttachedKeys(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let (a, b) = (fixture.key("a"), fixture.key("b"))
        let lease = try await store.grantLease(ttl: leaseTTL)
        _ = try await store.put(a, value: bytes("1"), lease: lease.id)
        let lastPut = try await store.put(b, value: bytes("2"), lease: lease.id)

        try await store.revokeLease(lease.id)
        #expect(try await store.get(a) == nil)
        #expect(try await store.get(b) == nil)
        #expect(try await store.currentRevision() == lastPut + 1)

        let revokeAgain = await #expect(throws: LinearizableStoreError.self) {
            try await store.revokeLease(lease.id)
        }
        #expect(revokeAgain?.code == .leaseNotFound)

        let keepAlive = await #expect(throws: LinearizableStoreError.self) {
            try await store.keepAlive(lease.id)
        }
        #expect(keepAlive?.code == .leaseNotFound)

        // Revoking a lease with no keys deletes nothing and keeps the revision.
        let empty = try await store.grantLease(ttl: leaseTTL)
        try await store.revokeLease(empty.id)
        #expect(try await store.currentRevision() == lastPut + 1)
    }

    static func leaseTimeToLiveListsKeys(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let lease = try await store.grantLease(ttl: leaseTTL)
        _ = try await store.put(fixture.key("b"), value: bytes("2"), lease: lease.id)
        _ = try await store.put(fixture.key("a"), value: bytes("1"), lease: lease.id)
        _ = try await store.put(fixture.key("c"), value: bytes("3"))

        try await fixture.advanceTime(.seconds(4))
        let status = try await store.leaseTimeToLive(lease.id)
        #expect(status.id == lease.id)
        #expect(status.grantedTTL == lease.ttl)
        #expect(status.remainingTTL <= lease.ttl - .seconds(4))
        #expect(status.remainingTTL > .zero)
        #expect(status.keys == [fixture.key("a"), fixture.key("b")])
    }

    static func putMovesKeyBetweenLeases(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let key = fixture.key("moved")
        let first = try await store.grantLease(ttl: leaseTTL)
        let second = try await store.grantLease(ttl: leaseTTL)

        _ = try await store.put(key, value: bytes("1"), lease: first.id)
        _ = try await store.put(key, value: bytes("2"), lease: second.id)
        #expect(try await store.leaseTimeToLive(first.id).keys == [])
        #expect(try await store.leaseTimeToLive(second.id).keys == [key])

        try await store.revokeLease(first.id)
        #expect(try await store.get(key)?.value == bytes("2"))

        // A put without a lease detaches the key, so revoking its old lease keeps it.
        _ = try await store.put(key, value: bytes("3"))
        #expect(try await store.get(key)?.lease == nil)
        try await store.revokeLease(second.id)
        #expect(try await store.get(key)?.value == bytes("3"))
    }

    static func oversizedKeyAndValueRejected(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store
        let maximumKey =
            fixture.keyPrefix + String(repeating: "k", count: LinearizableStoreLimits.maximumKeyBytes - fixture.keyPrefix.utf8.count)
        let oversizedKey = maximumKey + "k"
        let oversizedValue = [UInt8](repeating: 7, count: LinearizableStoreLimits.maximumValueBytes + 1)
        let revision = try await store.currentRevision()

        let putKey = await #expect(throws: LinearizableStoreError.self) {
            try await store.put(oversizedKey, value: bytes("v"))
        }
        #expect(putKey?.code == .keyTooLarge)
        #expect(putKey?.message.contains("1537") == true)

        let getKey = await #expect(throws: LinearizableStoreError.self) {
            try await store.get(oversizedKey)
        }
        #expect(getKey?.code == .keyTooLarge)

        let compareKey = await #expect(throws: LinearizableStoreError.self) {
            try await store.transaction(compares: [.exists(oversizedKey)], success: [], failure: [])
        }
        #expect(compareKey?.code == .keyTooLarge)

        let putValue = await #expect(throws: LinearizableStoreError.self) {
            try await store.put(fixture.key("large"), value: oversizedValue)
        }
        #expect(putValue?.code == .valueTooLarge)
        #expect(putValue?.message.contains(String(LinearizableStoreLimits.maximumValueBytes + 1)) == true)

        let swapValue = await #expect(throws: LinearizableStoreError.self) {
            try await store.compareAndSwap(key: fixture.key("large"), expectedModRevision: 0, newValue: oversizedValue)
        }
        #expect(swapValue?.code == .valueTooLarge)

        #expect(try await store.get(fixture.key("large")) == nil)
        #expect(try await store.currentRevision() == revision)

        // A key of exactly the maximum size is accepted.
        _ = try await store.put(maximumKey, value: bytes("v"))
        #expect(try await store.get(maximumKey)?.value == bytes("v"))
    }

    static func invalidArgumentsRejected(_ fixture: LinearizableStoreFixture) async throws {
        let store = fixture.store

        let emptyKey = await #expect(throws: LinearizableStoreError.self) {
            try await store.put("", value: bytes("v"))
        }
        #expect(emptyKey?.code == .invalidArgument)

        for ttl in [Duration.zero, .seconds(-1), LinearizableStoreLimits.maximumLeaseTTL + .seconds(1)] {
            let grant = await #expect(throws: LinearizableStoreError.self, "TTL \(ttl)") {
                try await store.grantLease(ttl: ttl)
            }
            #expect(grant?.code == .invalidArgument, "TTL \(ttl)")
        }

        let negativeRevision = await #expect(throws: LinearizableStoreError.self) {
            try await store.compareAndSwap(key: fixture.key("k"), expectedModRevision: -1, newValue: bytes("v"))
        }
        #expect(negativeRevision?.code == .invalidArgument)
    }

    static func unavailableStoreRejectsEveryCall(_ fixture: LinearizableStoreFixture) async throws {
        // This implementation cannot simulate a partition.
        guard let setAvailable = fixture.setAvailable else { return }

        let store = fixture.store
        let (kept, leased) = (fixture.key("kept"), fixture.key("leased"))
        let lease = try await store.grantLease(ttl: leaseTTL)
        _ = try await store.put(kept, value: bytes("1"))
        let revision = try await store.put(leased, value: bytes("2"), lease: lease.id)

        try await setAvailable(false)

        let calls: [(name: String, call: @Sendable () async throws -> Void)] = [
            ("currentRevision", { _ = try await store.currentRevision() }),
            ("get", { _ = try await store.get(kept) }),
            ("range", { _ = try await store.range(prefix: fixture.keyPrefix) }),
            ("put", { _ = try await store.put(kept, value: bytes("changed")) }),
            ("delete", { _ = try await store.delete(kept) }),
            ("transaction", { _ = try await store.transaction(compares: [], success: [.delete(kept)], failure: []) }),
            ("compareAndSwap", { _ = try await store.compareAndSwap(key: kept, expectedModRevision: 0, newValue: bytes("x")) }),
            ("grantLease", { _ = try await store.grantLease(ttl: leaseTTL) }),
            ("keepAlive", { _ = try await store.keepAlive(lease.id) }),
            ("revokeLease", { try await store.revokeLease(lease.id) }),
            ("leaseTimeToLive", { _ = try await store.leaseTimeToLive(lease.id) }),
        ]
        for (name, call) in calls {
            let error = await #expect(throws: LinearizableStoreError.self, "\(name)") {
                try await call()
            }
            #expect(error?.code == .unavailable, "\(name)")
        }

        // The lease cannot be kept alive during the partition, so it expires.
        try await fixture.advanceTime(leaseTTL + .seconds(1))
        try await setAvailable(true)

        #expect(try await store.get(kept)?.value == bytes("1"))
        #expect(try await store.get(leased) == nil)
        #expect(try await store.currentRevision() == revision + 1)
    }
}

/// A clock that a test sets to any time, including backwards.
private final class SettableClock: WallClock {
    /// The current time in milliseconds since the Unix epoch.
    private let now: Mutex<Int64>

    init(startMilliseconds: Int64) {
        now = Mutex(startMilliseconds)
    }

    func set(_ milliseconds: Int64) {
        now.withLock { $0 = milliseconds }
    }

    func nowMilliseconds() -> Int64 {
        now.withLock { $0 }
    }

    func sleep(for duration: Duration) async throws {
        Issue.record("the embedded linearizable store must not sleep")
    }
}

@Suite struct LinearizableStoreTests {
    static func makeEmbeddedFixture() -> LinearizableStoreFixture {
        let clock = ManualClock()
        let store = EmbeddedLinearizableStore(clock: clock)
        return LinearizableStoreFixture(
            store: store,
            advanceTime: { clock.advance(by: $0) },
            setAvailable: { store.setAvailable($0) },
            keyPrefix: "conformance/"
        )
    }

    @Test("embedded store meets the contract", arguments: LinearizableStoreContract.allCases)
    func embeddedStore(_ contract: LinearizableStoreContract) async throws {
        try await contract.check(with: Self.makeEmbeddedFixture)
    }

    @Test func leaseExpiresExactlyAtTTL() throws {
        let clock = ManualClock()
        let store = EmbeddedLinearizableStore(clock: clock)
        let lease = try store.grantLease(ttl: .seconds(3))
        _ = try store.put("k", value: [1], lease: lease.id)

        clock.advance(by: .milliseconds(2999))
        #expect(try store.get("k") != nil)
        #expect(try store.leaseTimeToLive(lease.id).remainingTTL == .milliseconds(1))

        clock.advance(by: .milliseconds(1))
        #expect(try store.get("k") == nil)
    }

    @Test func reapExpiresLeasesInDeadlineOrder() throws {
        let clock = ManualClock()
        let store = EmbeddedLinearizableStore(clock: clock)
        let later = try store.grantLease(ttl: .seconds(5))
        let sooner = try store.grantLease(ttl: .seconds(3))
        let live = try store.grantLease(ttl: .seconds(60))
        _ = try store.put("later", value: [1], lease: later.id)
        let lastPut = try store.put("sooner", value: [2], lease: sooner.id)

        clock.advance(by: .seconds(10))
        store.setAvailable(false)

        // Reaping ignores the availability switch.
        #expect(store.reapExpiredLeases() == [sooner.id, later.id])
        #expect(store.reapExpiredLeases() == [])

        store.setAvailable(true)
        #expect(try store.currentRevision() == lastPut + 2)
        #expect(try store.range(prefix: "").isEmpty)
        #expect(try store.leaseTimeToLive(live.id).remainingTTL == .seconds(50))
    }

    @Test func clockSteppedBackDoesNotExtendLease() throws {
        let start: Int64 = 1_800_000_000_000
        let clock = SettableClock(startMilliseconds: start)
        let store = EmbeddedLinearizableStore(clock: clock)
        let lease = try store.grantLease(ttl: .seconds(10))

        clock.set(start + 8000)
        #expect(try store.leaseTimeToLive(lease.id).remainingTTL == .seconds(2))

        // The store keeps its own time at the highest reading seen.
        clock.set(start + 1000)
        #expect(try store.leaseTimeToLive(lease.id).remainingTTL == .seconds(2))

        clock.set(start + 10_000)
        let expired = #expect(throws: LinearizableStoreError.self) {
            try store.keepAlive(lease.id)
        }
        #expect(expired?.code == .leaseNotFound)
    }

    @Test func ttlRoundsUpToMilliseconds() throws {
        let store = EmbeddedLinearizableStore(clock: ManualClock())

        #expect(try store.grantLease(ttl: .microseconds(1500)).ttl == .milliseconds(2))
        #expect(try store.grantLease(ttl: .nanoseconds(1)).ttl == .milliseconds(1))
        #expect(try store.grantLease(ttl: .seconds(2)).ttl == .seconds(2))
    }

    @Test func maximumValueIsAccepted() throws {
        let store = EmbeddedLinearizableStore(clock: ManualClock())
        let value = [UInt8](repeating: 1, count: LinearizableStoreLimits.maximumValueBytes)

        _ = try store.put("large", value: value, lease: nil)
        #expect(try store.get("large")?.value.count == LinearizableStoreLimits.maximumValueBytes)
    }

    @Test func leaseIDsAreDistinctAndNonZero() throws {
        let store = EmbeddedLinearizableStore(clock: ManualClock())
        let ids = try (0..<100).map { _ in try store.grantLease(ttl: .seconds(1)).id }

        #expect(Set(ids).count == 100)
        #expect(!ids.contains(LeaseID(rawValue: 0)))
    }
}
