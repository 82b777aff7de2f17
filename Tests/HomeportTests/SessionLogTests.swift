import Foundation
import Testing
@testable import Homeport

@Suite struct SessionLogTests {
    static func temporaryPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("session-log-\(UUID().uuidString).log").path
    }

    /// Runs a node that logs to `path`, drives a session through every data type, and returns it.
    static func writeThroughNode(logPath: String) async throws -> (SessionHandle, MemorySessionStore) {
        let topology = try RegionTopology(regions: [RegionEndpoint(name: "us-east")], latency: .zero)
        let clock = SystemClock()
        let store = MemorySessionStore(journal: SessionJournal(log: try SessionLog(path: logPath, policy: .always)))
        let node = RegionNode(
            configuration: RegionNodeConfiguration(region: "us-east"), store: store, limits: SessionStoreLimits(),
            keyRing: try TokenKeyRing.generated(), peers: InterRegionClient(topology: topology, clock: clock),
            metrics: MetricsRegistry(), clock: clock, logger: Logger(label: "test", sink: .discarding))
        let port = try node.start()
        let baseURL = "http://127.0.0.1:\(port)"
        let client = HomeportClient()

        let (session, _) = try await client.createSession(at: baseURL, tenant: "acme")
        _ = try await client.appendTurn(at: baseURL, session, role: "user", content: "hello", tokens: 1, idempotencyKey: "u1")
        _ = try await client.putKVCacheRefs(at: baseURL, session, refs: [(block: 1, location: "gpu-0")])
        _ = try await client.writeLedgerEntry(at: baseURL, session, callID: "c1", status: "requested", name: "search")
        _ = try await client.writeLedgerEntry(at: baseURL, session, callID: "c1", status: "succeeded", result: .string("ok"))
        _ = try await client.putValue(at: baseURL, session, name: "model", value: .string("m1"))
        _ = try await client.appendTurn(
            at: baseURL, session, role: "assistant", content: "hi there", tokens: 2, idempotencyKey: "a1", metadata: ["lang": "en"])
        await node.shutdown()
        return (session, store)
    }

    @Test func recoveryRebuildsEverySession() async throws {
        let path = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (session, original) = try await Self.writeThroughNode(logPath: path)

        let entries = try SessionLog.recover(path: path)
        let restored = MemorySessionStore()
        restored.restore(try SessionLog.rebuildSessions(from: entries, region: "us-east", limits: SessionStoreLimits()))

        let id = SessionID(session.id)!
        let before = try original.replicatedState(id)
        let after = try restored.replicatedState(id)
        #expect(entries.count == 7)
        #expect(after.info == before.info)
        #expect(after.turns == before.turns)
        #expect(after.ledger == before.ledger)
        #expect(after.values == before.values)
        #expect(try restored.kvCacheRefs(id, nowMilliseconds: 0).isEmpty)
    }

    @Test func restoredStoreRecognisesRetries() async throws {
        let path = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (session, _) = try await Self.writeThroughNode(logPath: path)

        let restored = MemorySessionStore()
        restored.restore(
            try SessionLog.rebuildSessions(from: try SessionLog.recover(path: path), region: "us-east", limits: SessionStoreLimits()))
        let id = SessionID(session.id)!
        let retry = try restored.appendTurn(
            id, TurnDraft(role: .assistant, content: "hi there", tokens: 2, metadata: ["lang": "en"], idempotencyKey: "a1"),
            nowMilliseconds: 0)
        let next = try restored.appendTurn(id, TurnDraft(role: .user, content: "next", tokens: 1), nowMilliseconds: 0)

        #expect(retry.replayed)
        #expect(next.turn.stamp.seq == 7)
        #expect(try restored.sessionInfo(id).turnCount == 3)
    }

    @Test func tornLastLineIsDropped() async throws {
        let path = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        _ = try await Self.writeThroughNode(logPath: path)
        let wholeSize = try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int

        let handle = FileHandle(forWritingAtPath: path)!
        handle.seekToEndOfFile()
        handle.write(Data(#"{"kind":"turnAppended","sess"#.utf8))
        handle.closeFile()

        #expect(try SessionLog.recover(path: path).count == 7)
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int == wholeSize)
    }

    @Test func corruptMiddleLineIsAnError() throws {
        let path = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("not json\n{}\n".utf8).write(to: URL(fileURLWithPath: path))

        let error = #expect(throws: SessionLogError.self) { try SessionLog.recover(path: path) }
        #expect(error?.detail.contains("line 1") == true)
    }

    @Test func missingLogIsEmpty() throws {
        #expect(try SessionLog.recover(path: Self.temporaryPath()).isEmpty)
    }
}

@Suite struct SessionJournalTests {
    @Test func failedLogWriteUndoesTheMutation() throws {
        // Every write to /dev/full fails with ENOSPC.
        let store = MemorySessionStore(journal: SessionJournal(log: try SessionLog(path: "/dev/full", policy: .periodic(.seconds(1)))))
        let id = SessionID("session-1")!

        let createError = #expect(throws: SessionStoreError.self) {
            try store.createSession(id, tenant: TenantID("acme")!, home: "us-east", epoch: 1, nowMilliseconds: 0)
        }
        #expect(createError?.code == .notDurable)
        #expect(store.sessionIDs().isEmpty)
    }

    @Test func failedLogWriteLeavesSessionUnchanged() throws {
        let path = SessionLogTests.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = MemorySessionStore(journal: SessionJournal(log: try SessionLog(path: path, policy: .always)))
        let id = SessionID("session-1")!
        _ = try store.createSession(id, tenant: TenantID("acme")!, home: "us-east", epoch: 1, nowMilliseconds: 0)
        _ = try store.appendTurn(id, TurnDraft(role: .user, content: "kept", tokens: 1), nowMilliseconds: 0)

        // The same session on a store whose log is /dev/full: a disk that filled up.
        let failing = MemorySessionStore(journal: SessionJournal(log: try SessionLog(path: "/dev/full", policy: .always)))
        failing.restore(
            try SessionLog.rebuildSessions(from: try SessionLog.recover(path: path), region: "us-east", limits: SessionStoreLimits()))
        let error = #expect(throws: SessionStoreError.self) {
            try failing.appendTurn(id, TurnDraft(role: .user, content: "lost", tokens: 1), nowMilliseconds: 0)
        }
        #expect(error?.code == .notDurable)
        #expect(try failing.readTurns(id, .all).turns.map(\.content) == ["kept"])
        #expect(try failing.sessionInfo(id).lastStamp.seq == 1)
    }
}
