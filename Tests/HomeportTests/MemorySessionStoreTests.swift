import Testing
@testable import Homeport

@Suite struct MemorySessionStoreTests {
    static let id = SessionID("session-1")!
    static let tenant = TenantID("acme")!

    static func makeStore(_ configure: (inout SessionStoreLimits) -> Void = { _ in }) throws -> MemorySessionStore {
        var limits = SessionStoreLimits()
        configure(&limits)
        let store = MemorySessionStore(limits: limits)
        _ = try store.createSession(id, tenant: tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        return store
    }

    static func draft(_ content: String, key: String? = nil, role: TurnRole = .user) -> TurnDraft {
        TurnDraft(role: role, content: content, tokens: content.count, idempotencyKey: key)
    }

    // MARK: Conversation buffer

    @Test func appendsAreStampedInOrder() throws {
        let store = try Self.makeStore()
        let first = try store.appendTurn(Self.id, Self.draft("a"), nowMilliseconds: 1)
        let second = try store.appendTurn(Self.id, Self.draft("b"), nowMilliseconds: 2)

        #expect(first.turn.stamp == SessionStamp(epoch: 1, seq: 1))
        #expect(second.turn.stamp == SessionStamp(epoch: 1, seq: 2))
        #expect(try store.readTurns(Self.id, .all).turns.map(\.content) == ["a", "b"])
    }

    @Test func retryWithSameKeyReturnsFirstResult() throws {
        let store = try Self.makeStore()
        let first = try store.appendTurn(Self.id, Self.draft("hello", key: "k1"), nowMilliseconds: 1)
        let retry = try store.appendTurn(Self.id, Self.draft("hello", key: "k1"), nowMilliseconds: 5)

        #expect(!first.replayed)
        #expect(retry.replayed)
        #expect(retry.turn == first.turn)
        #expect(try store.sessionInfo(Self.id).turnCount == 1)
    }

    @Test func sameKeyWithOtherContentIsRejected() throws {
        let store = try Self.makeStore()
        _ = try store.appendTurn(Self.id, Self.draft("hello", key: "k1"), nowMilliseconds: 1)
        let error = #expect(throws: SessionStoreError.self) {
            try store.appendTurn(Self.id, Self.draft("hullo", key: "k1"), nowMilliseconds: 2)
        }
        #expect(error?.code == .idempotencyKeyReused)
        #expect(try store.sessionInfo(Self.id).turnCount == 1)
    }

    @Test func concurrentAppendsNeverDuplicateAndStayOrdered() async throws {
        let store = try Self.makeStore()
        let writers = 8
        let turnsPerWriter = 50

        // Every turn is sent twice, from two tasks, with the same key.
        await withTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                for copy in 0..<2 {
                    group.addTask {
                        for turn in 0..<turnsPerWriter {
                            let key = "w\(writer)-t\(turn)"
                            _ = try? store.appendTurn(Self.id, Self.draft(key, key: key), nowMilliseconds: Int64(copy))
                        }
                    }
                }
            }
        }

        let turns = try store.readTurns(Self.id, .all).turns
        #expect(turns.count == writers * turnsPerWriter)
        #expect(Set(turns.map(\.content)).count == writers * turnsPerWriter)
        #expect(turns.map(\.stamp.seq) == Array(1...UInt64(writers * turnsPerWriter)))
        for writer in 0..<writers {
            let own = turns.filter { $0.content.hasPrefix("w\(writer)-") }.map(\.content)
            #expect(own == (0..<turnsPerWriter).map { "w\(writer)-t\($0)" })
        }
    }

    @Test func tailAndSinceSelectTurns() throws {
        let store = try Self.makeStore()
        for content in ["a", "b", "c", "d"] {
            _ = try store.appendTurn(Self.id, Self.draft(content), nowMilliseconds: 0)
        }
        #expect(try store.readTurns(Self.id, .tail(2)).turns.map(\.content) == ["c", "d"])
        #expect(try store.readTurns(Self.id, .tail(10)).turns.map(\.content) == ["a", "b", "c", "d"])
        #expect(try store.readTurns(Self.id, .since(2)).turns.map(\.content) == ["c", "d"])
        #expect(try store.readTurns(Self.id, .since(4)).turns.isEmpty)
    }

    @Test func turnLimitRejectsByDefault() throws {
        let store = try Self.makeStore { $0.maximumTurns = 2 }
        _ = try store.appendTurn(Self.id, Self.draft("a"), nowMilliseconds: 0)
        _ = try store.appendTurn(Self.id, Self.draft("b"), nowMilliseconds: 0)
        let error = #expect(throws: SessionStoreError.self) { try store.appendTurn(Self.id, Self.draft("c"), nowMilliseconds: 0) }
        #expect(error?.code == .limitExceeded)
        #expect(try store.readTurns(Self.id, .all).turns.map(\.content) == ["a", "b"])
    }

    @Test func dropOldestKeepsNewestTurns() throws {
        let store = try Self.makeStore {
            $0.maximumTurns = 3
            $0.maximumBufferBytes = 5
            $0.dropOldestTurns = true
        }
        for content in ["aa", "bb", "c", "dd"] {
            _ = try store.appendTurn(Self.id, Self.draft(content), nowMilliseconds: 0)
        }
        // "dd" needs 2 bytes: dropping "aa" leaves 3 turns and 5 bytes, both at the limit.
        #expect(try store.readTurns(Self.id, .all).turns.map(\.content) == ["bb", "c", "dd"])
        #expect(try store.sessionInfo(Self.id).bufferBytes == 5)
    }

    @Test func oversizedTurnIsRejected() throws {
        let store = try Self.makeStore { $0.maximumTurnBytes = 4 }
        let error = #expect(throws: SessionStoreError.self) { try store.appendTurn(Self.id, Self.draft("12345"), nowMilliseconds: 0) }
        #expect(error?.code == .limitExceeded)
        #expect(try store.sessionInfo(Self.id).turnCount == 0)
    }

    @Test func unknownSessionIsNotFound() throws {
        let store = try Self.makeStore()
        let error = #expect(throws: SessionStoreError.self) { try store.sessionInfo(SessionID("missing")!) }
        #expect(error?.code == .sessionNotFound)
    }

    @Test func duplicateSessionIsRejected() throws {
        let store = try Self.makeStore()
        let error = #expect(throws: SessionStoreError.self) {
            try store.createSession(Self.id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        }
        #expect(error?.code == .sessionExists)
    }

    // MARK: Tool-call ledger

    @Test func ledgerStatusMovesForward() throws {
        let store = try Self.makeStore()
        let requested = try store.writeLedgerEntry(
            Self.id, LedgerWrite(callID: "c1", name: "search", status: .requested), nowMilliseconds: 1)
        let running = try store.writeLedgerEntry(Self.id, LedgerWrite(callID: "c1", status: .running), nowMilliseconds: 2)
        let succeeded = try store.writeLedgerEntry(
            Self.id, LedgerWrite(callID: "c1", status: .succeeded, result: .string("ok")), nowMilliseconds: 3)

        #expect(requested.applied)
        #expect(running.applied)
        #expect(succeeded.applied)
        #expect(succeeded.entry.status == .succeeded)
        #expect(succeeded.entry.result == .string("ok"))
        #expect(succeeded.entry.stamp.seq > running.entry.stamp.seq)
    }

    @Test func olderLedgerStatusIsANoOp() throws {
        let store = try Self.makeStore()
        _ = try store.writeLedgerEntry(Self.id, LedgerWrite(callID: "c1", name: "search", status: .running), nowMilliseconds: 1)
        let late = try store.writeLedgerEntry(Self.id, LedgerWrite(callID: "c1", status: .requested), nowMilliseconds: 2)
        let repeated = try store.writeLedgerEntry(Self.id, LedgerWrite(callID: "c1", status: .running), nowMilliseconds: 3)

        #expect(!late.applied)
        #expect(!repeated.applied)
        #expect(try store.ledgerEntry(Self.id, callID: "c1").status == .running)
        #expect(try store.ledgerEntry(Self.id, callID: "c1").updatedAtMilliseconds == 1)
    }

    @Test func conflictingTerminalStatesAreRejected() throws {
        let store = try Self.makeStore()
        _ = try store.writeLedgerEntry(Self.id, LedgerWrite(callID: "c1", name: "search", status: .succeeded), nowMilliseconds: 1)
        let error = #expect(throws: SessionStoreError.self) {
            try store.writeLedgerEntry(Self.id, LedgerWrite(callID: "c1", status: .failed), nowMilliseconds: 2)
        }
        #expect(error?.code == .ledgerConflict)
        #expect(try store.ledgerEntry(Self.id, callID: "c1").status == .succeeded)

        let same = try store.writeLedgerEntry(Self.id, LedgerWrite(callID: "c1", status: .succeeded), nowMilliseconds: 3)
        #expect(!same.applied)
    }

    @Test func newLedgerEntryNeedsAName() throws {
        let store = try Self.makeStore()
        let error = #expect(throws: SessionStoreError.self) {
            try store.writeLedgerEntry(Self.id, LedgerWrite(callID: "c1", status: .requested), nowMilliseconds: 1)
        }
        #expect(error?.code == .invalidWrite)
        #expect(try store.ledgerEntries(Self.id).isEmpty)
    }

    @Test func ledgerNameCannotChange() throws {
        let store = try Self.makeStore()
        _ = try store.writeLedgerEntry(Self.id, LedgerWrite(callID: "c1", name: "search", status: .requested), nowMilliseconds: 1)
        let error = #expect(throws: SessionStoreError.self) {
            try store.writeLedgerEntry(Self.id, LedgerWrite(callID: "c1", name: "browse", status: .running), nowMilliseconds: 2)
        }
        #expect(error?.code == .ledgerConflict)
    }

    // MARK: KV-cache refs and values

    @Test func kvCacheRefsExpire() throws {
        let store = try Self.makeStore()
        _ = try store.putKVCacheRefs(
            Self.id, [(block: 7, location: "gpu-1"), (block: 3, location: "gpu-2")], ttlMilliseconds: 100, nowMilliseconds: 1000)

        #expect(try store.kvCacheRefs(Self.id, nowMilliseconds: 1099).map(\.block) == [3, 7])
        #expect(try store.kvCacheRef(Self.id, block: 7, nowMilliseconds: 1099).location == "gpu-1")
        #expect(try store.kvCacheRefs(Self.id, nowMilliseconds: 1100).isEmpty)
        let error = #expect(throws: SessionStoreError.self) { try store.kvCacheRef(Self.id, block: 7, nowMilliseconds: 1100) }
        #expect(error?.code == .entryNotFound)
    }

    @Test func kvCacheRefLimitRejects() throws {
        let store = try Self.makeStore { $0.maximumKVCacheRefs = 2 }
        let error = #expect(throws: SessionStoreError.self) {
            try store.putKVCacheRefs(Self.id, [(1, "a"), (2, "b"), (3, "c")], ttlMilliseconds: 100, nowMilliseconds: 0)
        }
        #expect(error?.code == .limitExceeded)
        #expect(try store.kvCacheRefs(Self.id, nowMilliseconds: 0).isEmpty)
    }

    @Test func valuesKeepTheLatestWrite() throws {
        let store = try Self.makeStore()
        let first = try store.putValue(Self.id, name: "model", value: .string("a"), nowMilliseconds: 1)
        let second = try store.putValue(Self.id, name: "model", value: .string("b"), nowMilliseconds: 2)

        #expect(second.stamp > first.stamp)
        #expect(try store.value(Self.id, name: "model").value == .string("b"))
        #expect(try store.values(Self.id).count == 1)
    }

    @Test func oversizedValueIsRejected() throws {
        let store = try Self.makeStore { $0.maximumValueBytes = 8 }
        let error = #expect(throws: SessionStoreError.self) {
            try store.putValue(Self.id, name: "big", value: .string("0123456789"), nowMilliseconds: 1)
        }
        #expect(error?.code == .limitExceeded)
        #expect(try store.values(Self.id).isEmpty)
    }

    @Test func contentHashIsStableAndSensitive() {
        #expect(SessionRecord.contentHash("hello world, a turn") == SessionRecord.contentHash("hello world, a turn"))
        #expect(SessionRecord.contentHash("hello world, a turn") != SessionRecord.contentHash("hello world, a turm"))
        #expect(SessionRecord.contentHash("") != SessionRecord.contentHash("\0"))
    }
}
