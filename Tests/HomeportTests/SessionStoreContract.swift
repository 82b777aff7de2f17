import Foundation
import Testing

@testable import Homeport

/// Makes a store of one implementation, with the given limits and journal,
/// empty and independent of every other store the factory made.
typealias SessionStoreFactory = @Sendable (SessionStoreLimits, SessionJournal?) async throws -> any SessionStore

/// The contract of `SessionStore`, one case per check. A suite for an
/// implementation runs every case with a factory for that implementation,
/// as `MemorySessionStoreTests` and `RedisSessionStoreTests` do.
enum SessionStoreContract: String, CaseIterable, Sendable {
    case appendsAreStampedInOrder
    case retryWithSameKeyReturnsFirstResult
    case sameKeyWithOtherTurnIsRejected
    case concurrentAppendsNeverDuplicateAndStayOrdered
    case tailAndSinceSelectTurns
    case turnLimitRejectsByDefault
    case bufferLimitRejectsByDefault
    case dropOldestKeepsNewestTurns
    case retryOfDroppedTurnIsLimitExceeded
    case idempotencyKeysAreForgottenOldestFirst
    case oversizedTurnIsRejected
    case unknownSessionIsNotFoundForEveryOperation
    case duplicateSessionIsRejected
    case sessionLimitRejects
    case ledgerStatusMovesForward
    case olderLedgerStatusIsANoOp
    case conflictingTerminalStatesAreRejected
    case newLedgerEntryNeedsAName
    case ledgerNameCannotChange
    case ledgerKeepsFirstArguments
    case ledgerEntryLimitRejects
    case ledgerEntryBytesCountStoredArgumentsAndResult
    case ledgerEntriesAreSortedAndMissingIsNotFound
    case unusualTextAndJSONRoundTrip
    case kvCacheRefsExpire
    case kvCacheRefLimitRejects
    case kvCacheRefLimitCountsOnlyUnexpiredRefs
    case kvCacheRefRefreshReplacesBlock
    case emptyKVCacheRefPutTakesNoStamp
    case valuesKeepTheLatestWrite
    case valueLimitsReject
    case missingValueIsNotFound
    case kindsShareOneCounter
    case journalRecordsEveryMutationInStampOrder
    case replicatedStateReadsEverything
    case adoptBuildsSessionFromStandby
    case mergeFollowsEachTypesRule
    case mergeBuildsMissingSession
    case mergeRejectsUnknownPositionAndOtherTenant
    case removeAllSessionsEmptiesStore

    /// Runs this check with stores from `make`.
    func check(with make: SessionStoreFactory) async throws {
        switch self {
        case .appendsAreStampedInOrder: try await Self.appendsAreStampedInOrder(make)
        case .retryWithSameKeyReturnsFirstResult: try await Self.retryWithSameKeyReturnsFirstResult(make)
        case .sameKeyWithOtherTurnIsRejected: try await Self.sameKeyWithOtherTurnIsRejected(make)
        case .concurrentAppendsNeverDuplicateAndStayOrdered: try await Self.concurrentAppendsNeverDuplicateAndStayOrdered(make)
        case .tailAndSinceSelectTurns: try await Self.tailAndSinceSelectTurns(make)
        case .turnLimitRejectsByDefault: try await Self.turnLimitRejectsByDefault(make)
        case .bufferLimitRejectsByDefault: try await Self.bufferLimitRejectsByDefault(make)
        case .dropOldestKeepsNewestTurns: try await Self.dropOldestKeepsNewestTurns(make)
        case .retryOfDroppedTurnIsLimitExceeded: try await Self.retryOfDroppedTurnIsLimitExceeded(make)
        case .idempotencyKeysAreForgottenOldestFirst: try await Self.idempotencyKeysAreForgottenOldestFirst(make)
        case .oversizedTurnIsRejected: try await Self.oversizedTurnIsRejected(make)
        case .unknownSessionIsNotFoundForEveryOperation: try await Self.unknownSessionIsNotFoundForEveryOperation(make)
        case .duplicateSessionIsRejected: try await Self.duplicateSessionIsRejected(make)
        case .sessionLimitRejects: try await Self.sessionLimitRejects(make)
        case .ledgerStatusMovesForward: try await Self.ledgerStatusMovesForward(make)
        case .olderLedgerStatusIsANoOp: try await Self.olderLedgerStatusIsANoOp(make)
        case .conflictingTerminalStatesAreRejected: try await Self.conflictingTerminalStatesAreRejected(make)
        case .newLedgerEntryNeedsAName: try await Self.newLedgerEntryNeedsAName(make)
        case .ledgerNameCannotChange: try await Self.ledgerNameCannotChange(make)
        case .ledgerKeepsFirstArguments: try await Self.ledgerKeepsFirstArguments(make)
        case .ledgerEntryLimitRejects: try await Self.ledgerEntryLimitRejects(make)
        case .ledgerEntryBytesCountStoredArgumentsAndResult: try await Self.ledgerEntryBytesCountStoredArgumentsAndResult(make)
        case .ledgerEntriesAreSortedAndMissingIsNotFound: try await Self.ledgerEntriesAreSortedAndMissingIsNotFound(make)
        case .unusualTextAndJSONRoundTrip: try await Self.unusualTextAndJSONRoundTrip(make)
        case .kvCacheRefsExpire: try await Self.kvCacheRefsExpire(make)
        case .kvCacheRefLimitRejects: try await Self.kvCacheRefLimitRejects(make)
        case .kvCacheRefLimitCountsOnlyUnexpiredRefs: try await Self.kvCacheRefLimitCountsOnlyUnexpiredRefs(make)
        case .kvCacheRefRefreshReplacesBlock: try await Self.kvCacheRefRefreshReplacesBlock(make)
        case .emptyKVCacheRefPutTakesNoStamp: try await Self.emptyKVCacheRefPutTakesNoStamp(make)
        case .valuesKeepTheLatestWrite: try await Self.valuesKeepTheLatestWrite(make)
        case .valueLimitsReject: try await Self.valueLimitsReject(make)
        case .missingValueIsNotFound: try await Self.missingValueIsNotFound(make)
        case .kindsShareOneCounter: try await Self.kindsShareOneCounter(make)
        case .journalRecordsEveryMutationInStampOrder: try await Self.journalRecordsEveryMutationInStampOrder(make)
        case .replicatedStateReadsEverything: try await Self.replicatedStateReadsEverything(make)
        case .adoptBuildsSessionFromStandby: try await Self.adoptBuildsSessionFromStandby(make)
        case .mergeFollowsEachTypesRule: try await Self.mergeFollowsEachTypesRule(make)
        case .mergeBuildsMissingSession: try await Self.mergeBuildsMissingSession(make)
        case .mergeRejectsUnknownPositionAndOtherTenant: try await Self.mergeRejectsUnknownPositionAndOtherTenant(make)
        case .removeAllSessionsEmptiesStore: try await Self.removeAllSessionsEmptiesStore(make)
        }
    }

    // MARK: Fixtures

    static let id = SessionID("session-1")!
    static let tenant = TenantID("acme")!

    /// Returns a store from `make` that contains session `id` (tenant acme,
    /// home us-east, epoch 1, created at 0).
    static func storeWithSession(
        _ make: SessionStoreFactory, journal: SessionJournal? = nil, _ configure: (inout SessionStoreLimits) -> Void = { _ in }
    ) async throws -> any SessionStore {
        var limits = SessionStoreLimits()
        configure(&limits)
        let store = try await make(limits, journal)
        _ = try await store.createSession(id, tenant: tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        return store
    }

    static func draft(
        _ content: String, key: String? = nil, role: TurnRole = .user, metadata: [String: String] = [:]
    ) -> TurnDraft {
        TurnDraft(role: role, content: content, tokens: content.count, metadata: metadata, idempotencyKey: key)
    }

    static func stamp(_ epoch: UInt64, _ seq: UInt64) -> SessionStamp {
        SessionStamp(epoch: epoch, seq: seq)
    }

    static func contents(_ store: any SessionStore, _ id: SessionID = id) async throws -> [String] {
        try await store.readTurns(id, .all).turns.map(\.content)
    }

    /// Runs `body` and returns the code of the `SessionStoreError` it throws,
    /// or nil if it throws nothing.
    static func errorCode<Value>(_ body: () async throws(SessionStoreError) -> Value) async -> SessionStoreError.Code? {
        do {
            _ = try await body()
            return nil
        } catch {
            return error.code
        }
    }

    // MARK: Conversation buffer

    static func appendsAreStampedInOrder(_ make: SessionStoreFactory) async throws {
        let store = try await make(SessionStoreLimits(), nil)
        let created = try await store.createSession(id, tenant: tenant, home: "us-east", epoch: 3, nowMilliseconds: 7)
        #expect(created.lastStamp == stamp(3, 0))
        #expect(created.createdAtMilliseconds == 7)
        #expect(created.turnCount == 0)

        let first = try await store.appendTurn(id, draft("a"), nowMilliseconds: 10)
        let second = try await store.appendTurn(
            id, draft("bb", role: .assistant, metadata: ["lang": "en", "model": "m1"]), nowMilliseconds: 20)
        #expect(first.turn.stamp == stamp(3, 1))
        #expect(second.turn.stamp == stamp(3, 2))
        #expect(!first.replayed)
        #expect(second.turn.createdAtMilliseconds == 20)

        let (turns, info) = try await store.readTurns(id, .all)
        #expect(turns == [first.turn, second.turn])
        #expect(info.lastStamp == stamp(3, 2))
        #expect(info.turnCount == 2)
        #expect(info.bufferBytes == 3)
        #expect(info.tenant == tenant)
        #expect(info.home == "us-east")
        #expect(info.createdAtMilliseconds == 7)
        #expect(!info.replicationGap)
        #expect(try await store.sessionInfo(id) == info)
    }

    static func retryWithSameKeyReturnsFirstResult(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        let first = try await store.appendTurn(id, draft("hello", key: "k1", metadata: ["a": "b"]), nowMilliseconds: 1)
        _ = try await store.appendTurn(id, draft("other"), nowMilliseconds: 2)
        let retry = try await store.appendTurn(id, draft("hello", key: "k1", metadata: ["a": "b"]), nowMilliseconds: 5)

        #expect(!first.replayed)
        #expect(retry.replayed)
        #expect(retry.turn == first.turn)
        #expect(retry.turn.createdAtMilliseconds == 1)
        let info = try await store.sessionInfo(id)
        #expect(info.turnCount == 2)
        #expect(info.lastStamp == stamp(1, 2))
    }

    static func sameKeyWithOtherTurnIsRejected(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        _ = try await store.appendTurn(id, draft("hello", key: "k1", metadata: ["a": "b"]), nowMilliseconds: 1)

        let variants = [
            draft("hullo", key: "k1", metadata: ["a": "b"]),
            draft("hello", key: "k1", role: .assistant, metadata: ["a": "b"]),
            TurnDraft(role: .user, content: "hello", tokens: 99, metadata: ["a": "b"], idempotencyKey: "k1"),
            draft("hello", key: "k1", metadata: ["a": "c"]),
            draft("hello", key: "k1"),
        ]
        for variant in variants {
            let code = await errorCode { () async throws(SessionStoreError) in try await store.appendTurn(id, variant, nowMilliseconds: 2) }
            #expect(code == .idempotencyKeyReused, "variant \(variant)")
        }
        #expect(try await store.sessionInfo(id).turnCount == 1)
        #expect(try await store.sessionInfo(id).lastStamp == stamp(1, 1))

        // The message names the key and the stamp of the turn it first stored.
        do throws(SessionStoreError) {
            _ = try await store.appendTurn(id, variants[0], nowMilliseconds: 3)
            Issue.record("a reused key was accepted")
        } catch {
            #expect(error.detail.contains("\"k1\""))
            #expect(error.detail.contains("(1, 1)"))
        }
    }

    static func concurrentAppendsNeverDuplicateAndStayOrdered(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        let writers = 8
        let turnsPerWriter = 40

        // Every turn is sent twice, from two tasks, with the same key.
        await withTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                for copy in 0..<2 {
                    group.addTask {
                        for turn in 0..<turnsPerWriter {
                            let key = "w\(writer)-t\(turn)"
                            _ = try? await store.appendTurn(id, draft(key, key: key), nowMilliseconds: Int64(copy))
                        }
                    }
                }
            }
        }

        let turns = try await store.readTurns(id, .all).turns
        #expect(turns.count == writers * turnsPerWriter)
        #expect(Set(turns.map(\.content)).count == writers * turnsPerWriter)
        #expect(turns.map(\.stamp.seq) == Array(1...UInt64(writers * turnsPerWriter)))
        for writer in 0..<writers {
            let own = turns.filter { $0.content.hasPrefix("w\(writer)-") }.map(\.content)
            #expect(own == (0..<turnsPerWriter).map { "w\(writer)-t\($0)" })
        }
    }

    static func tailAndSinceSelectTurns(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        for content in ["a", "b", "c", "d"] {
            _ = try await store.appendTurn(id, draft(content), nowMilliseconds: 0)
        }
        #expect(try await store.readTurns(id, .tail(2)).turns.map(\.content) == ["c", "d"])
        #expect(try await store.readTurns(id, .tail(10)).turns.map(\.content) == ["a", "b", "c", "d"])
        #expect(try await store.readTurns(id, .tail(0)).turns.isEmpty)
        #expect(try await store.readTurns(id, .tail(Int.max)).turns.map(\.content) == ["a", "b", "c", "d"])
        #expect(try await store.readTurns(id, .since(UInt64.max)).turns.isEmpty)
        #expect(try await store.readTurns(id, .since(2)).turns.map(\.content) == ["c", "d"])
        #expect(try await store.readTurns(id, .since(0)).turns.map(\.content) == ["a", "b", "c", "d"])
        #expect(try await store.readTurns(id, .since(4)).turns.isEmpty)
        #expect(try await store.readTurns(id, .since(9)).session.lastStamp == stamp(1, 4))
    }

    static func turnLimitRejectsByDefault(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make) { $0.maximumTurns = 2 }
        _ = try await store.appendTurn(id, draft("a"), nowMilliseconds: 0)
        _ = try await store.appendTurn(id, draft("b"), nowMilliseconds: 0)
        let code = await errorCode { () async throws(SessionStoreError) in try await store.appendTurn(id, draft("c"), nowMilliseconds: 0) }
        #expect(code == .limitExceeded)
        #expect(try await contents(store) == ["a", "b"])
        #expect(try await store.sessionInfo(id).lastStamp == stamp(1, 2))
    }

    static func bufferLimitRejectsByDefault(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make) { $0.maximumBufferBytes = 4 }
        _ = try await store.appendTurn(id, draft("abc"), nowMilliseconds: 0)
        let code = await errorCode { () async throws(SessionStoreError) in try await store.appendTurn(id, draft("de"), nowMilliseconds: 0) }
        #expect(code == .limitExceeded)
        _ = try await store.appendTurn(id, draft("f"), nowMilliseconds: 0)
        #expect(try await contents(store) == ["abc", "f"])
        #expect(try await store.sessionInfo(id).bufferBytes == 4)
    }

    static func dropOldestKeepsNewestTurns(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make) {
            $0.maximumTurns = 3
            $0.maximumBufferBytes = 5
            $0.dropOldestTurns = true
        }
        for content in ["aa", "bb", "c", "dd"] {
            _ = try await store.appendTurn(id, draft(content), nowMilliseconds: 0)
        }
        // "dd" needs 2 bytes: dropping "aa" leaves 3 turns and 5 bytes, both at the limit.
        #expect(try await contents(store) == ["bb", "c", "dd"])
        #expect(try await store.sessionInfo(id).bufferBytes == 5)

        // A turn larger than the whole buffer drops every other turn and is kept.
        let large = try await store.appendTurn(id, draft("1234567"), nowMilliseconds: 0)
        #expect(large.turn.stamp == stamp(1, 5))
        #expect(try await contents(store) == ["1234567"])
        #expect(try await store.sessionInfo(id).bufferBytes == 7)
    }

    static func retryOfDroppedTurnIsLimitExceeded(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make) {
            $0.maximumTurns = 1
            $0.dropOldestTurns = true
        }
        _ = try await store.appendTurn(id, draft("a", key: "k1"), nowMilliseconds: 0)
        _ = try await store.appendTurn(id, draft("b", key: "k2"), nowMilliseconds: 0)
        let code = await errorCode { () async throws(SessionStoreError) in
            try await store.appendTurn(id, draft("a", key: "k1"), nowMilliseconds: 0)
        }
        #expect(code == .limitExceeded)
        #expect(try await contents(store) == ["b"])
        #expect(try await store.appendTurn(id, draft("b", key: "k2"), nowMilliseconds: 0).replayed)
    }

    static func idempotencyKeysAreForgottenOldestFirst(_ make: SessionStoreFactory) async throws {
        // Keys are kept for four times the turn limit, and at least 16.
        let store = try await storeWithSession(make) {
            $0.maximumTurns = 2
            $0.dropOldestTurns = true
        }
        for index in 0...16 {
            _ = try await store.appendTurn(id, draft("t\(index)", key: "k\(index)"), nowMilliseconds: 0)
        }

        // k1 is still known, but its turn was dropped; k16's turn is held.
        let code = await errorCode { () async throws(SessionStoreError) in
            try await store.appendTurn(id, draft("t1", key: "k1"), nowMilliseconds: 0)
        }
        #expect(code == .limitExceeded)
        #expect(try await store.appendTurn(id, draft("t16", key: "k16"), nowMilliseconds: 0).replayed)

        // k0 is forgotten, so sending it again appends a new turn.
        let again = try await store.appendTurn(id, draft("t0", key: "k0"), nowMilliseconds: 0)
        #expect(!again.replayed)
        #expect(again.turn.stamp == stamp(1, 18))
        #expect(try await contents(store) == ["t16", "t0"])
    }

    static func oversizedTurnIsRejected(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make) { $0.maximumTurnBytes = 4 }
        let code = await errorCode { () async throws(SessionStoreError) in
            try await store.appendTurn(id, draft("12345"), nowMilliseconds: 0)
        }
        #expect(code == .limitExceeded)
        _ = try await store.appendTurn(id, draft("1234"), nowMilliseconds: 0)
        #expect(try await store.sessionInfo(id).turnCount == 1)
    }

    static func unknownSessionIsNotFoundForEveryOperation(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        let missing = SessionID("missing")!
        let write = LedgerWrite(callID: "c1", name: "search", status: .requested)
        let operations: [(String, () async throws(SessionStoreError) -> Void)] = [
            ("sessionInfo", { () async throws(SessionStoreError) in _ = try await store.sessionInfo(missing) }),
            (
                "appendTurn",
                { () async throws(SessionStoreError) in _ = try await store.appendTurn(missing, draft("a", key: "k"), nowMilliseconds: 0) }
            ),
            ("readTurns", { () async throws(SessionStoreError) in _ = try await store.readTurns(missing, .all) }),
            (
                "writeLedgerEntry",
                { () async throws(SessionStoreError) in _ = try await store.writeLedgerEntry(missing, write, nowMilliseconds: 0) }
            ),
            ("ledgerEntry", { () async throws(SessionStoreError) in _ = try await store.ledgerEntry(missing, callID: "c1") }),
            ("ledgerEntries", { () async throws(SessionStoreError) in _ = try await store.ledgerEntries(missing) }),
            (
                "putKVCacheRefs",
                { () async throws(SessionStoreError) in
                    _ = try await store.putKVCacheRefs(missing, [(1, "gpu")], ttlMilliseconds: 10, nowMilliseconds: 0)
                }
            ),
            ("kvCacheRefs", { () async throws(SessionStoreError) in _ = try await store.kvCacheRefs(missing, nowMilliseconds: 0) }),
            ("kvCacheRef", { () async throws(SessionStoreError) in _ = try await store.kvCacheRef(missing, block: 1, nowMilliseconds: 0) }),
            (
                "putValue",
                { () async throws(SessionStoreError) in _ = try await store.putValue(missing, name: "v", value: .null, nowMilliseconds: 0) }
            ),
            ("value", { () async throws(SessionStoreError) in _ = try await store.value(missing, name: "v") }),
            ("values", { () async throws(SessionStoreError) in _ = try await store.values(missing) }),
            ("replicatedState", { () async throws(SessionStoreError) in _ = try await store.replicatedState(missing) }),
        ]
        for (name, operation) in operations {
            let code = await errorCode(operation)
            #expect(code == .sessionNotFound, "\(name)")
        }

        // The failed writes left nothing behind.
        #expect(try await store.sessionIDs() == [id])
        #expect(try await store.adoptedPositions([missing]).isEmpty)
    }

    static func duplicateSessionIsRejected(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        _ = try await store.appendTurn(id, draft("a"), nowMilliseconds: 0)
        let code = await errorCode { () async throws(SessionStoreError) in
            try await store.createSession(id, tenant: TenantID("other")!, home: "eu-west", epoch: 5, nowMilliseconds: 9)
        }
        #expect(code == .sessionExists)
        let info = try await store.sessionInfo(id)
        #expect(info.tenant == tenant)
        #expect(info.epoch == 1)
        #expect(info.turnCount == 1)
    }

    static func sessionLimitRejects(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make) { $0.maximumSessions = 2 }
        _ = try await store.createSession(SessionID("second")!, tenant: tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        let code = await errorCode { () async throws(SessionStoreError) in
            try await store.createSession(SessionID("third")!, tenant: tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        }
        #expect(code == .limitExceeded)
        #expect(try await store.sessionIDs() == [SessionID("second")!, id])
    }

    // MARK: Tool-call ledger

    static func ledgerStatusMovesForward(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        let requested = try await store.writeLedgerEntry(
            id, LedgerWrite(callID: "c1", name: "search", arguments: .object(["q": .string("x")]), status: .requested), nowMilliseconds: 1)
        let running = try await store.writeLedgerEntry(id, LedgerWrite(callID: "c1", status: .running), nowMilliseconds: 2)
        let succeeded = try await store.writeLedgerEntry(
            id, LedgerWrite(callID: "c1", status: .succeeded, result: .string("ok")), nowMilliseconds: 3)

        #expect(requested.applied)
        #expect(requested.entry.stamp == stamp(1, 1))
        #expect(running.applied)
        #expect(running.entry.stamp == stamp(1, 2))
        #expect(succeeded.applied)
        #expect(succeeded.entry.status == .succeeded)
        #expect(succeeded.entry.result == .string("ok"))
        #expect(succeeded.entry.name == "search")
        #expect(succeeded.entry.arguments == .object(["q": .string("x")]))
        #expect(succeeded.entry.stamp == stamp(1, 3))
        #expect(succeeded.entry.updatedAtMilliseconds == 3)
        #expect(succeeded.entry.conflictingStatus == nil)
        #expect(try await store.ledgerEntry(id, callID: "c1") == succeeded.entry)
    }

    static func olderLedgerStatusIsANoOp(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        let first = try await store.writeLedgerEntry(
            id, LedgerWrite(callID: "c1", name: "search", status: .running), nowMilliseconds: 1)
        let late = try await store.writeLedgerEntry(id, LedgerWrite(callID: "c1", status: .requested), nowMilliseconds: 2)
        let repeated = try await store.writeLedgerEntry(
            id, LedgerWrite(callID: "c1", status: .running, result: .string("ignored")), nowMilliseconds: 3)

        #expect(!late.applied)
        #expect(!repeated.applied)
        #expect(late.entry == first.entry)
        #expect(repeated.entry == first.entry)
        #expect(try await store.ledgerEntry(id, callID: "c1") == first.entry)
        #expect(try await store.sessionInfo(id).lastStamp == stamp(1, 1))
    }

    static func conflictingTerminalStatesAreRejected(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        _ = try await store.writeLedgerEntry(id, LedgerWrite(callID: "c1", name: "search", status: .succeeded), nowMilliseconds: 1)
        for status in [LedgerStatus.failed, .cancelled] {
            let code = await errorCode { () async throws(SessionStoreError) in
                try await store.writeLedgerEntry(id, LedgerWrite(callID: "c1", status: status), nowMilliseconds: 2)
            }
            #expect(code == .ledgerConflict, "\(status)")
        }
        #expect(try await store.ledgerEntry(id, callID: "c1").status == .succeeded)

        let same = try await store.writeLedgerEntry(id, LedgerWrite(callID: "c1", status: .succeeded), nowMilliseconds: 3)
        #expect(!same.applied)
        let earlier = try await store.writeLedgerEntry(id, LedgerWrite(callID: "c1", status: .running), nowMilliseconds: 3)
        #expect(!earlier.applied)
    }

    static func newLedgerEntryNeedsAName(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        let code = await errorCode { () async throws(SessionStoreError) in
            try await store.writeLedgerEntry(id, LedgerWrite(callID: "c1", status: .requested), nowMilliseconds: 1)
        }
        #expect(code == .invalidWrite)
        #expect(try await store.ledgerEntries(id).isEmpty)
        #expect(try await store.sessionInfo(id).lastStamp == stamp(1, 0))
    }

    static func ledgerNameCannotChange(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        _ = try await store.writeLedgerEntry(id, LedgerWrite(callID: "c1", name: "search", status: .requested), nowMilliseconds: 1)
        let code = await errorCode { () async throws(SessionStoreError) in
            try await store.writeLedgerEntry(id, LedgerWrite(callID: "c1", name: "browse", status: .running), nowMilliseconds: 2)
        }
        #expect(code == .ledgerConflict)
        #expect(try await store.ledgerEntry(id, callID: "c1").status == .requested)
        // Naming the same tool again is allowed.
        let same = try await store.writeLedgerEntry(id, LedgerWrite(callID: "c1", name: "search", status: .running), nowMilliseconds: 3)
        #expect(same.applied)
    }

    static func ledgerKeepsFirstArguments(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        _ = try await store.writeLedgerEntry(
            id, LedgerWrite(callID: "c1", name: "search", arguments: .integer(1), status: .requested), nowMilliseconds: 1)
        let changed = try await store.writeLedgerEntry(
            id, LedgerWrite(callID: "c1", arguments: .integer(2), status: .running), nowMilliseconds: 2)
        #expect(changed.entry.arguments == .integer(1))

        // An entry created without arguments takes the first that come.
        _ = try await store.writeLedgerEntry(id, LedgerWrite(callID: "c2", name: "search", status: .requested), nowMilliseconds: 3)
        #expect(try await store.ledgerEntry(id, callID: "c2").arguments == .null)
        let filled = try await store.writeLedgerEntry(
            id, LedgerWrite(callID: "c2", arguments: .string("late"), status: .running), nowMilliseconds: 4)
        #expect(filled.entry.arguments == .string("late"))

        // A result without a status change is not stored.
        let resultOnly = try await store.writeLedgerEntry(
            id, LedgerWrite(callID: "c2", status: .running, result: .string("r")), nowMilliseconds: 5)
        #expect(resultOnly.entry.result == nil)
    }

    static func ledgerEntryLimitRejects(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make) { $0.maximumLedgerEntries = 1 }
        _ = try await store.writeLedgerEntry(id, LedgerWrite(callID: "c1", name: "search", status: .requested), nowMilliseconds: 1)
        let code = await errorCode { () async throws(SessionStoreError) in
            try await store.writeLedgerEntry(id, LedgerWrite(callID: "c2", name: "search", status: .requested), nowMilliseconds: 2)
        }
        #expect(code == .limitExceeded)
        #expect(try await store.writeLedgerEntry(id, LedgerWrite(callID: "c1", status: .succeeded), nowMilliseconds: 3).applied)
        #expect(try await store.ledgerEntries(id).map(\.callID) == ["c1"])
    }

    static func ledgerEntryBytesCountStoredArgumentsAndResult(_ make: SessionStoreFactory) async throws {
        // "0123456789" serialises to 12 bytes with its quotes.
        let store = try await storeWithSession(make) { $0.maximumLedgerEntryBytes = 20 }
        _ = try await store.writeLedgerEntry(
            id, LedgerWrite(callID: "c1", name: "search", arguments: .string("0123456789"), status: .requested), nowMilliseconds: 1)

        let code = await errorCode { () async throws(SessionStoreError) in
            try await store.writeLedgerEntry(
                id, LedgerWrite(callID: "c1", status: .succeeded, result: .string("0123456789")), nowMilliseconds: 2)
        }
        #expect(code == .limitExceeded)
        #expect(try await store.ledgerEntry(id, callID: "c1").status == .requested)

        let fits = try await store.writeLedgerEntry(
            id, LedgerWrite(callID: "c1", status: .succeeded, result: .string("ok")), nowMilliseconds: 3)
        #expect(fits.applied)

        let tooLarge = await errorCode { () async throws(SessionStoreError) in
            try await store.writeLedgerEntry(
                id, LedgerWrite(callID: "c2", name: "search", arguments: .string(String(repeating: "x", count: 19)), status: .requested),
                nowMilliseconds: 4)
        }
        #expect(tooLarge == .limitExceeded)
        #expect(try await store.ledgerEntries(id).map(\.callID) == ["c1"])
    }

    static func ledgerEntriesAreSortedAndMissingIsNotFound(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        for callID in ["c3", "a1", "b2"] {
            _ = try await store.writeLedgerEntry(id, LedgerWrite(callID: callID, name: "tool", status: .requested), nowMilliseconds: 1)
        }
        #expect(try await store.ledgerEntries(id).map(\.callID) == ["a1", "b2", "c3"])
        let code = await errorCode { () async throws(SessionStoreError) in try await store.ledgerEntry(id, callID: "zz") }
        #expect(code == .entryNotFound)
    }

    static func unusualTextAndJSONRoundTrip(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        let text = "quote \" backslash \\ slash / newline \n tab \t control \u{01} é 日本 😀 {braces} "
        let json: JSONValue = .object([
            "text": .string(text),
            "numbers": .array([.integer(Int64.max), .integer(Int64.min), .number(1.5), .number(-2.25e-10), .integer(0)]),
            "flags": .array([.bool(true), .bool(false), .null]),
            "nested": .object(["empty": .object([:]), "list": .array([])]),
        ])

        let turn = try await store.appendTurn(
            id, draft(text, key: "key with spaces {x}", metadata: [text: text, "": ""]), nowMilliseconds: -5)
        let empty = try await store.appendTurn(id, draft(""), nowMilliseconds: 0)
        #expect(try await store.readTurns(id, .all).turns == [turn.turn, empty.turn])
        #expect(
            try await store.appendTurn(id, draft(text, key: "key with spaces {x}", metadata: [text: text, "": ""]), nowMilliseconds: 1)
                .replayed)

        let callID = "call {1} é \" x"
        let written = try await store.writeLedgerEntry(
            id, LedgerWrite(callID: callID, name: text, arguments: json, status: .succeeded, result: json), nowMilliseconds: 2)
        #expect(try await store.ledgerEntry(id, callID: callID) == written.entry)
        #expect(written.entry.arguments == json)
        #expect(written.entry.result == json)

        let stored = try await store.putValue(id, name: text, value: json, nowMilliseconds: 3)
        #expect(try await store.value(id, name: text) == stored)
        #expect(try await store.values(id) == [stored])

        let refs = try await store.putKVCacheRefs(id, [(block: -7, location: text)], ttlMilliseconds: 100, nowMilliseconds: 0)
        #expect(try await store.kvCacheRef(id, block: -7, nowMilliseconds: 0) == refs[0])
        #expect(refs[0].location == text)
    }

    // MARK: KV-cache refs

    static func kvCacheRefsExpire(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        let stored = try await store.putKVCacheRefs(
            id, [(block: 7, location: "gpu-1"), (block: 3, location: "gpu-2")], ttlMilliseconds: 100, nowMilliseconds: 1000)
        #expect(stored.map(\.block) == [7, 3])
        #expect(stored.allSatisfy { $0.stamp == stamp(1, 1) })
        #expect(stored.allSatisfy { $0.expiresAtMilliseconds == 1100 })

        #expect(try await store.kvCacheRefs(id, nowMilliseconds: 1099) == stored.sorted { $0.block < $1.block })
        #expect(try await store.kvCacheRef(id, block: 7, nowMilliseconds: 1099).location == "gpu-1")
        #expect(try await store.kvCacheRefs(id, nowMilliseconds: 1100).isEmpty)
        let code = await errorCode { () async throws(SessionStoreError) in try await store.kvCacheRef(id, block: 7, nowMilliseconds: 1100) }
        #expect(code == .entryNotFound)
        let unknown = await errorCode { () async throws(SessionStoreError) in try await store.kvCacheRef(id, block: 99, nowMilliseconds: 0)
        }
        #expect(unknown == .entryNotFound)
    }

    static func kvCacheRefLimitRejects(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make) { $0.maximumKVCacheRefs = 2 }
        let code = await errorCode { () async throws(SessionStoreError) in
            try await store.putKVCacheRefs(id, [(1, "a"), (2, "b"), (3, "c")], ttlMilliseconds: 100, nowMilliseconds: 0)
        }
        #expect(code == .limitExceeded)
        #expect(try await store.kvCacheRefs(id, nowMilliseconds: 0).isEmpty)
        #expect(try await store.sessionInfo(id).lastStamp == stamp(1, 0))

        // A block named twice counts once.
        let twice = try await store.putKVCacheRefs(id, [(1, "a"), (1, "b"), (2, "c")], ttlMilliseconds: 100, nowMilliseconds: 0)
        #expect(twice.count == 3)
        #expect(try await store.kvCacheRefs(id, nowMilliseconds: 0).map(\.location) == ["b", "c"])
    }

    static func kvCacheRefLimitCountsOnlyUnexpiredRefs(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make) { $0.maximumKVCacheRefs = 2 }
        _ = try await store.putKVCacheRefs(id, [(1, "a"), (2, "b")], ttlMilliseconds: 100, nowMilliseconds: 0)
        let code = await errorCode { () async throws(SessionStoreError) in
            try await store.putKVCacheRefs(id, [(3, "c")], ttlMilliseconds: 100, nowMilliseconds: 99)
        }
        #expect(code == .limitExceeded)

        _ = try await store.putKVCacheRefs(id, [(3, "c"), (4, "d")], ttlMilliseconds: 100, nowMilliseconds: 100)
        #expect(try await store.kvCacheRefs(id, nowMilliseconds: 100).map(\.block) == [3, 4])
    }

    static func kvCacheRefRefreshReplacesBlock(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make) { $0.maximumKVCacheRefs = 1 }
        _ = try await store.putKVCacheRefs(id, [(7, "gpu-1")], ttlMilliseconds: 100, nowMilliseconds: 0)
        let refreshed = try await store.putKVCacheRefs(id, [(7, "gpu-2")], ttlMilliseconds: 100, nowMilliseconds: 50)
        #expect(refreshed[0].stamp == stamp(1, 2))
        let held = try await store.kvCacheRefs(id, nowMilliseconds: 120)
        #expect(held == refreshed)
        #expect(held.first?.expiresAtMilliseconds == 150)
    }

    static func emptyKVCacheRefPutTakesNoStamp(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        #expect(try await store.putKVCacheRefs(id, [], ttlMilliseconds: 100, nowMilliseconds: 0).isEmpty)
        #expect(try await store.sessionInfo(id).lastStamp == stamp(1, 0))
    }

    // MARK: Session values

    static func valuesKeepTheLatestWrite(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        let first = try await store.putValue(id, name: "model", value: .string("a"), nowMilliseconds: 1)
        let second = try await store.putValue(id, name: "model", value: .string("b"), nowMilliseconds: 2)
        let other = try await store.putValue(id, name: "lang", value: .integer(3), nowMilliseconds: 3)

        #expect(second.stamp > first.stamp)
        #expect(try await store.value(id, name: "model") == second)
        #expect(try await store.values(id) == [other, second])
    }

    static func valueLimitsReject(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make) {
            $0.maximumValueBytes = 8
            $0.maximumValues = 1
        }
        let tooLarge = await errorCode { () async throws(SessionStoreError) in
            try await store.putValue(id, name: "big", value: .string("0123456789"), nowMilliseconds: 1)
        }
        #expect(tooLarge == .limitExceeded)
        #expect(try await store.values(id).isEmpty)

        _ = try await store.putValue(id, name: "a", value: .string("123456"), nowMilliseconds: 1)
        let tooMany = await errorCode { () async throws(SessionStoreError) in
            try await store.putValue(id, name: "b", value: .integer(1), nowMilliseconds: 2)
        }
        #expect(tooMany == .limitExceeded)
        _ = try await store.putValue(id, name: "a", value: .integer(2), nowMilliseconds: 3)
        #expect(try await store.values(id).map(\.value) == [.integer(2)])
        #expect(try await store.sessionInfo(id).lastStamp == stamp(1, 2))
    }

    static func missingValueIsNotFound(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        let code = await errorCode { () async throws(SessionStoreError) in try await store.value(id, name: "absent") }
        #expect(code == .entryNotFound)
    }

    // MARK: Stamps and journal

    static func kindsShareOneCounter(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make) { $0.maximumTurnBytes = 4 }
        #expect(try await store.appendTurn(id, draft("a", key: "k"), nowMilliseconds: 0).turn.stamp == stamp(1, 1))
        #expect(
            try await store.writeLedgerEntry(id, LedgerWrite(callID: "c", name: "t", status: .running), nowMilliseconds: 0).entry.stamp
                == stamp(1, 2))
        #expect(try await store.putKVCacheRefs(id, [(1, "g")], ttlMilliseconds: 10, nowMilliseconds: 0).first?.stamp == stamp(1, 3))
        #expect(try await store.putValue(id, name: "v", value: .null, nowMilliseconds: 0).stamp == stamp(1, 4))

        // A replay, a no-op and a rejected write take no stamp.
        _ = try await store.appendTurn(id, draft("a", key: "k"), nowMilliseconds: 0)
        _ = try await store.writeLedgerEntry(id, LedgerWrite(callID: "c", status: .requested), nowMilliseconds: 0)
        _ = await errorCode { () async throws(SessionStoreError) in try await store.appendTurn(id, draft("12345"), nowMilliseconds: 0) }
        #expect(try await store.sessionInfo(id).lastStamp == stamp(1, 4))
        #expect(try await store.appendTurn(id, draft("b"), nowMilliseconds: 0).turn.stamp == stamp(1, 5))
    }

    static func journalRecordsEveryMutationInStampOrder(_ make: SessionStoreFactory) async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("homeport-journal-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let journal = SessionJournal(log: try SessionLog(path: path, policy: .always))
        let store = try await storeWithSession(make, journal: journal)

        let turn = try await store.appendTurn(id, draft("a", key: "k"), nowMilliseconds: 1)
        _ = try await store.appendTurn(id, draft("a", key: "k"), nowMilliseconds: 2)
        let ledger = try await store.writeLedgerEntry(id, LedgerWrite(callID: "c", name: "t", status: .running), nowMilliseconds: 3)
        _ = try await store.writeLedgerEntry(id, LedgerWrite(callID: "c", status: .requested), nowMilliseconds: 4)
        _ = try await store.putKVCacheRefs(id, [(1, "g")], ttlMilliseconds: 10, nowMilliseconds: 5)
        let value = try await store.putValue(id, name: "v", value: .string("x"), nowMilliseconds: 6)

        let entries = try SessionLog.recover(path: path)
        #expect(entries.map(\.payload.kind) == [.sessionCreated, .turnAppended, .ledgerEntryWritten, .skipped, .valuePut])
        #expect(entries.map(\.seq) == [0, 1, 2, 3, 4])
        #expect(entries.allSatisfy { $0.session == id })
        #expect(entries.allSatisfy { $0.tenant == tenant })
        #expect(entries.allSatisfy { $0.home == "us-east" })
        #expect(entries[1].payload == .turnAppended(turn.turn))
        #expect(entries[2].payload == .ledgerEntryWritten(ledger.entry))
        #expect(entries[4].payload == .valuePut(value))

        // Concurrent writers: the journal still receives the session's stamps in order.
        await withTaskGroup(of: Void.self) { group in
            for writer in 0..<4 {
                group.addTask {
                    for index in 0..<10 {
                        _ = try? await store.appendTurn(id, draft("w\(writer)-\(index)"), nowMilliseconds: 7)
                    }
                }
            }
        }
        let all = try SessionLog.recover(path: path)
        #expect(all.map(\.seq) == Array(0...44))
    }

    static func replicatedStateReadsEverything(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        let first = try await store.appendTurn(id, draft("a"), nowMilliseconds: 1)
        let c2 = try await store.writeLedgerEntry(id, LedgerWrite(callID: "c2", name: "t", status: .running), nowMilliseconds: 2)
        let c1 = try await store.writeLedgerEntry(id, LedgerWrite(callID: "c1", name: "t", status: .running), nowMilliseconds: 3)
        _ = try await store.putKVCacheRefs(id, [(1, "g")], ttlMilliseconds: 10, nowMilliseconds: 4)
        let b = try await store.putValue(id, name: "b", value: .integer(1), nowMilliseconds: 5)
        let a = try await store.putValue(id, name: "a", value: .integer(2), nowMilliseconds: 6)

        let state = try await store.replicatedState(id)
        #expect(state.info == (try await store.sessionInfo(id)))
        #expect(state.info.lastStamp == stamp(1, 6))
        #expect(state.turns == [first.turn])
        #expect(state.ledger == [c1.entry, c2.entry])
        #expect(state.values == [a, b])
    }

    // MARK: Takeover and reconcile

    /// Returns a standby copy of a session that an old home wrote at epoch 1,
    /// up to position 4. It contains turns "a" (key ka) and "bb" (key kb),
    /// ledger entry c1 and value v.
    static func standbyCopy(_ id: SessionID = id) throws -> StandbySession {
        let turns = [
            Turn(stamp: stamp(1, 1), role: .user, content: "a", tokens: 1, createdAtMilliseconds: 10, metadata: [:], idempotencyKey: "ka"),
            Turn(
                stamp: stamp(1, 2), role: .assistant, content: "bb", tokens: 2, createdAtMilliseconds: 11, metadata: ["m": "1"],
                idempotencyKey: "kb"),
        ]
        let ledger = [
            LedgerEntry(callID: "c1", name: "t", arguments: .integer(1), status: .running, stamp: stamp(1, 3), updatedAtMilliseconds: 12)
        ]
        let values = [SessionValue(name: "v", value: .string("x"), stamp: stamp(1, 4), updatedAtMilliseconds: 13)]
        let info = SessionInfo(
            id: id, tenant: tenant, home: "us-east", epoch: 1, lastStamp: stamp(1, 4), turnCount: 2, bufferBytes: 3,
            createdAtMilliseconds: 5)
        let entry = ReplicationEntry.snapshot(info, turns: turns, ledger: ledger, values: values)
        guard case .snapshot(let snapshot) = entry.payload else { throw SessionStoreError(.invalidWrite, session: id, "no snapshot") }
        return StandbySession(snapshotEntry: entry, snapshot: snapshot)
    }

    static func adoptBuildsSessionFromStandby(_ make: SessionStoreFactory) async throws {
        let store = try await make(SessionStoreLimits(), nil)
        let copy = try standbyCopy()
        let info = try await store.adopt(copy, home: "us-west", epoch: 2, replicationGap: true)
        #expect(info.home == "us-west")
        #expect(info.epoch == 2)
        #expect(info.lastStamp == stamp(2, 4))
        #expect(info.replicationGap)
        #expect(info.turnCount == 2)
        #expect(info.bufferBytes == 3)
        #expect(info.createdAtMilliseconds == 5)

        let state = try await store.replicatedState(id)
        #expect(state.turns == copy.turns)
        #expect(state.ledger == Array(copy.ledger.values))
        #expect(state.values == Array(copy.values.values))

        // A retry of a turn the copy contains replays it, and new writes take the new epoch.
        let retry = try await store.appendTurn(
            id, TurnDraft(role: .assistant, content: "bb", tokens: 2, metadata: ["m": "1"], idempotencyKey: "kb"), nowMilliseconds: 20)
        #expect(retry.replayed)
        #expect(retry.turn == copy.turns[1])
        #expect(try await store.appendTurn(id, draft("c"), nowMilliseconds: 21).turn.stamp == stamp(2, 5))

        // Adopting again returns the session as it is.
        let again = try await store.adopt(copy, home: "eu-west", epoch: 3, replicationGap: false)
        #expect(again.home == "us-west")
        #expect(again.lastStamp == stamp(2, 5))
        #expect(again.replicationGap)

        _ = try await store.createSession(SessionID("local")!, tenant: tenant, home: "us-west", epoch: 1, nowMilliseconds: 0)
        #expect(try await store.sessionIDs() == [SessionID("local")!, id])
        let positions = try await store.adoptedPositions([id, SessionID("local")!, SessionID("absent")!])
        #expect(positions == [id: stamp(1, 4)])
    }

    /// Returns the old home's tail after position 2 of `standbyCopy`. It has
    /// a keyed turn the new home lacks and a turn the new home got by a retry.
    /// Its ledger entries conflict with the new home's or are new to it, and
    /// its values are older or newer than the new home's.
    static func oldHomeTail(sinceSeq: UInt64 = 2) -> ReconcileTail {
        ReconcileTail(
            session: id, tenant: tenant, home: "us-east", lastStamp: stamp(1, 9), sinceSeq: sinceSeq, createdAtMilliseconds: 5,
            turns: [
                Turn(
                    stamp: stamp(1, 5), role: .user, content: "lost", tokens: 1, createdAtMilliseconds: 14, metadata: [:],
                    idempotencyKey: "kl"),
                Turn(
                    stamp: stamp(1, 6), role: .user, content: "retried", tokens: 1, createdAtMilliseconds: 15, metadata: [:],
                    idempotencyKey: "kr"),
            ],
            ledger: [
                LedgerEntry(
                    callID: "c1", name: "t", arguments: .integer(1), status: .succeeded, result: .string("old"), stamp: stamp(1, 7),
                    updatedAtMilliseconds: 16),
                LedgerEntry(callID: "c9", name: "t", arguments: .null, status: .failed, stamp: stamp(1, 8), updatedAtMilliseconds: 17),
            ],
            values: [
                SessionValue(name: "v", value: .string("old"), stamp: stamp(1, 9), updatedAtMilliseconds: 18),
                SessionValue(name: "w", value: .string("tail"), stamp: stamp(1, 9), updatedAtMilliseconds: 18),
            ])
    }

    static func mergeFollowsEachTypesRule(_ make: SessionStoreFactory) async throws {
        let store = try await make(SessionStoreLimits(), nil)
        _ = try await store.adopt(try standbyCopy(), home: "us-west", epoch: 2, replicationGap: true)

        // The new home's own writes after the takeover.
        _ = try await store.appendTurn(id, draft("retried", key: "kr"), nowMilliseconds: 30)
        _ = try await store.writeLedgerEntry(id, LedgerWrite(callID: "c1", status: .cancelled), nowMilliseconds: 31)
        _ = try await store.putValue(id, name: "v", value: .string("new"), nowMilliseconds: 32)
        #expect(try await store.sessionInfo(id).lastStamp == stamp(2, 7))

        let changed = try await store.mergeReconcileTail(oldHomeTail(), standby: nil, home: "us-west")
        // The lost turn, c1's conflict, c9 and w; not the retried turn or the older v.
        #expect(changed == 4)

        let (turns, info) = try await store.readTurns(id, .all)
        #expect(turns.map(\.content) == ["a", "bb", "lost", "retried"])
        #expect(turns.map(\.recovered) == [false, false, true, false])
        #expect(turns.map(\.stamp) == [stamp(1, 1), stamp(1, 2), stamp(1, 5), stamp(2, 5)])
        #expect(info.lastStamp == stamp(2, 8))
        #expect(!info.replicationGap)
        #expect(info.bufferBytes == 3 + 4 + 7)

        let c1 = try await store.ledgerEntry(id, callID: "c1")
        #expect(c1.status == .cancelled)
        #expect(c1.conflictingStatus == .succeeded)
        #expect(try await store.ledgerEntry(id, callID: "c9").status == .failed)
        #expect(try await store.value(id, name: "v").value == .string("new"))
        #expect(try await store.value(id, name: "w").value == .string("tail"))
        #expect(try await store.adoptedPositions([id]) == [id: stamp(1, 9)])

        // The recovered turn's key is known here now. It shares its seq with
        // the new home's turn, and a retry of either returns its own turn.
        let retry = try await store.appendTurn(
            id, TurnDraft(role: .user, content: "lost", tokens: 1, idempotencyKey: "kl"), nowMilliseconds: 40)
        #expect(retry.replayed)
        #expect(retry.turn.stamp == stamp(1, 5))
        #expect(retry.turn.recovered)
        let ownRetry = try await store.appendTurn(id, draft("retried", key: "kr"), nowMilliseconds: 41)
        #expect(ownRetry.replayed)
        #expect(ownRetry.turn.stamp == stamp(2, 5))
        #expect(ownRetry.turn.content == "retried")

        // The same tail again changes nothing and takes no stamp.
        #expect(try await store.mergeReconcileTail(oldHomeTail(), standby: nil, home: "us-west") == 0)
        #expect(try await store.sessionInfo(id).lastStamp == stamp(2, 8))
    }

    static func mergeBuildsMissingSession(_ make: SessionStoreFactory) async throws {
        // From the standby copy, at the copy's epoch plus one.
        let store = try await make(SessionStoreLimits(), nil)
        let changed = try await store.mergeReconcileTail(oldHomeTail(), standby: try standbyCopy(), home: "us-west")
        #expect(changed == 6)
        let info = try await store.sessionInfo(id)
        #expect(info.home == "us-west")
        #expect(info.epoch == 2)
        #expect(info.lastStamp == stamp(2, 5))
        #expect(try await contents(store) == ["a", "bb", "lost", "retried"])
        #expect(try await store.adoptedPositions([id]) == [id: stamp(1, 9)])
        #expect(try await store.value(id, name: "v").value == .string("old"))

        // From a complete tail alone.
        let other = try await make(SessionStoreLimits(), nil)
        #expect(try await other.mergeReconcileTail(oldHomeTail(sinceSeq: 0), standby: nil, home: "us-west") == 6)
        let built = try await other.readTurns(id, .all)
        #expect(built.turns.map(\.content) == ["lost", "retried"])
        #expect(built.turns.allSatisfy { $0.recovered })
        #expect(built.session.epoch == 2)
        #expect(built.session.tenant == tenant)
        #expect(built.session.createdAtMilliseconds == 5)
    }

    static func mergeRejectsUnknownPositionAndOtherTenant(_ make: SessionStoreFactory) async throws {
        let store = try await make(SessionStoreLimits(), nil)
        let unknown = await errorCode { () async throws(SessionStoreError) in
            try await store.mergeReconcileTail(oldHomeTail(), standby: nil, home: "us-west")
        }
        #expect(unknown == .reconcilePositionUnknown)
        #expect(try await store.sessionIDs().isEmpty)

        // A tail past the adopted position leaves a hole, so it is refused too.
        _ = try await store.adopt(try standbyCopy(), home: "us-west", epoch: 2, replicationGap: true)
        let ahead = await errorCode { () async throws(SessionStoreError) in
            try await store.mergeReconcileTail(oldHomeTail(sinceSeq: 5), standby: nil, home: "us-west")
        }
        #expect(ahead == .reconcilePositionUnknown)

        var foreign = oldHomeTail()
        foreign.tenant = TenantID("other")!
        let tenantCode = await errorCode { () async throws(SessionStoreError) in
            try await store.mergeReconcileTail(foreign, standby: nil, home: "us-west")
        }
        #expect(tenantCode == .invalidWrite)
        let info = try await store.sessionInfo(id)
        #expect(info.replicationGap)
        #expect(info.lastStamp == stamp(2, 4))
        #expect(try await contents(store) == ["a", "bb"])
    }

    static func removeAllSessionsEmptiesStore(_ make: SessionStoreFactory) async throws {
        let store = try await storeWithSession(make)
        _ = try await store.appendTurn(id, draft("a", key: "k"), nowMilliseconds: 0)
        _ = try await store.putKVCacheRefs(id, [(1, "g")], ttlMilliseconds: 10, nowMilliseconds: 0)
        for name in ["s3", "s2"] {
            _ = try await store.createSession(SessionID(name)!, tenant: tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        }
        #expect(try await store.sessionIDs() == [SessionID("s2")!, SessionID("s3")!, id])

        try await store.removeAllSessions()
        #expect(try await store.sessionIDs().isEmpty)
        let code = await errorCode { () async throws(SessionStoreError) in try await store.sessionInfo(id) }
        #expect(code == .sessionNotFound)

        // A session created again with the same id starts empty.
        _ = try await store.createSession(id, tenant: tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        #expect(try await store.appendTurn(id, draft("a", key: "k"), nowMilliseconds: 0).turn.stamp == stamp(1, 1))
        #expect(try await store.kvCacheRefs(id, nowMilliseconds: 0).isEmpty)
        #expect(try await store.sessionInfo(id).turnCount == 1)
    }
}
