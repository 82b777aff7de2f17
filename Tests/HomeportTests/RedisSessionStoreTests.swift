import Foundation
import Synchronization
import Testing

@testable import Homeport

/// The stores a test made, so that it can shut them all down at the end.
final class RedisStoreList: Sendable {
    private let stores = Mutex<[RedisSessionStore]>([])
    private let counter = Atomic<Int>(0)

    /// Returns a key prefix that no other store of this list has.
    func nextPrefix() -> String {
        "test\(counter.add(1, ordering: .relaxed).newValue)"
    }

    func add(_ store: RedisSessionStore) -> RedisSessionStore {
        stores.withLock { $0.append(store) }
        return store
    }

    func shutdownAll() {
        for store in stores.withLock({ $0 }) {
            store.shutdown()
        }
    }
}

/// Values that concurrent tasks of a test append to.
final class SharedList<Element: Sendable>: Sendable {
    private let elements = Mutex<[Element]>([])

    func append(_ element: Element) {
        elements.withLock { $0.append(element) }
    }

    var all: [Element] { elements.withLock { $0 } }
}

/// The Redis store against a real redis-server per test: the shared
/// contract, then what only a server store has (sharing, failures, the
/// configuration).
@Suite(.timeLimit(.minutes(2))) struct RedisSessionStoreTests {
    static let logger = Logger(label: "redis-test", sink: .discarding)

    /// Runs `body` with a fresh server and a factory of stores on it, each
    /// with a key prefix of its own. Shuts the stores down and stops the
    /// server at the end, also when `body` throws.
    static func withServer(_ body: (RedisServer, SessionStoreFactory, RedisStoreList) async throws -> Void) async throws {
        let server = try await RedisServer.start()
        let stores = RedisStoreList()
        defer {
            stores.shutdownAll()
            server.stop()
        }
        let make: SessionStoreFactory = { limits, journal in
            stores.add(
                try RedisSessionStore(
                    configuration: server.configuration(keyPrefix: stores.nextPrefix()), limits: limits, journal: journal, logger: logger))
        }
        try await body(server, make, stores)
    }

    static let id = SessionStoreContract.id
    static let tenant = SessionStoreContract.tenant

    static func draft(_ content: String, key: String? = nil) -> TurnDraft {
        SessionStoreContract.draft(content, key: key)
    }

    /// Retries `operation` until it succeeds, for at most about 10 s. Used
    /// after a server comes back, when the store has to notice and reconnect.
    static func eventually<Value>(_ operation: () async throws(SessionStoreError) -> Value) async throws -> Value {
        var lastError: SessionStoreError?
        for _ in 0..<1000 {
            do {
                return try await operation()
            } catch {
                lastError = error
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw lastError!
    }

    @Test("Redis store meets the contract", arguments: SessionStoreContract.allCases)
    func contract(_ check: SessionStoreContract) async throws {
        try await Self.withServer { _, make, _ in try await check.check(with: make) }
    }

    // MARK: Sharing one server

    @Test func sessionsOutliveTheStoreInstance() async throws {
        try await Self.withServer { server, _, stores in
            let configuration = server.configuration(keyPrefix: "shared")
            let first = stores.add(try RedisSessionStore(configuration: configuration, logger: Self.logger))
            _ = try await first.createSession(Self.id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
            let turn = try await first.appendTurn(Self.id, Self.draft("a", key: "k"), nowMilliseconds: 1)
            _ = try await first.writeLedgerEntry(Self.id, LedgerWrite(callID: "c", name: "t", status: .running), nowMilliseconds: 2)
            _ = try await first.putValue(Self.id, name: "v", value: .integer(1), nowMilliseconds: 3)
            let before = try await first.replicatedState(Self.id)
            first.shutdown()

            // Another node of the region, or this one after a restart.
            let second = stores.add(try RedisSessionStore(configuration: configuration, logger: Self.logger))
            let after = try await second.replicatedState(Self.id)
            #expect(after.info == before.info)
            #expect(after.turns == before.turns)
            #expect(after.ledger == before.ledger)
            #expect(after.values == before.values)
            let retry = try await second.appendTurn(Self.id, Self.draft("a", key: "k"), nowMilliseconds: 9)
            #expect(retry.replayed)
            #expect(retry.turn == turn.turn)
            #expect(try await second.appendTurn(Self.id, Self.draft("b"), nowMilliseconds: 10).turn.stamp.seq == 4)

            // The store the test shut down fails instead of hanging.
            let code = await SessionStoreContract.errorCode { () async throws(SessionStoreError) in try await first.sessionInfo(Self.id) }
            #expect(code == .storeUnavailable)
        }
    }

    @Test func keyPrefixesKeepStoresApart() async throws {
        try await Self.withServer { _, make, _ in
            let east = try await make(SessionStoreLimits(), nil)
            let west = try await make(SessionStoreLimits(), nil)
            _ = try await east.createSession(Self.id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
            _ = try await west.createSession(Self.id, tenant: Self.tenant, home: "us-west", epoch: 7, nowMilliseconds: 0)
            _ = try await east.appendTurn(Self.id, Self.draft("east"), nowMilliseconds: 0)

            #expect(try await west.readTurns(Self.id, .all).turns.isEmpty)
            #expect(try await west.sessionInfo(Self.id).epoch == 7)
            try await east.removeAllSessions()
            #expect(try await east.sessionIDs().isEmpty)
            #expect(try await west.sessionIDs() == [Self.id])
        }
    }

    @Test func keyLayoutIsAsDocumented() async throws {
        try await Self.withServer { server, _, stores in
            let store = stores.add(try RedisSessionStore(configuration: server.configuration(keyPrefix: "hp"), logger: Self.logger))
            _ = try await store.createSession(Self.id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
            _ = try await store.appendTurn(Self.id, Self.draft("a", key: "k"), nowMilliseconds: 0)
            _ = try await store.writeLedgerEntry(Self.id, LedgerWrite(callID: "c", name: "t", status: .running), nowMilliseconds: 0)
            _ = try await store.putKVCacheRefs(Self.id, [(1, "g")], ttlMilliseconds: 10, nowMilliseconds: 0)
            _ = try await store.putValue(Self.id, name: "v", value: .null, nowMilliseconds: 0)

            let keys = try #require(try server.command("KEYS", "*").elements).compactMap(\.text).sorted()
            let base = "hp:{session-1}:"
            let expected = [
                base + "meta", base + "turns", base + "keys", base + "keyorder", base + "ledger", base + "kv", base + "kvexpiry",
                base + "values", "hp:sessions",
            ]
            #expect(keys == expected.sorted())
            #expect(store.keys.keys(for: Self.id) == expected)
            #expect(try server.command("TYPE", base + "kvexpiry") == .status("zset"))
            #expect(try server.command("HGET", base + "meta", "seq") == .bulk(Array("4".utf8)))
        }
    }

    @Test func twoNodesWritingOneSessionStayConsistent() async throws {
        try await Self.withServer { server, _, stores in
            // Two stores on one prefix are two nodes of a region: only Redis
            // serialises their writes.
            let configuration = server.configuration(keyPrefix: "region")
            let nodes = [
                stores.add(try RedisSessionStore(configuration: configuration, logger: Self.logger)),
                stores.add(try RedisSessionStore(configuration: configuration, logger: Self.logger)),
            ]
            _ = try await nodes[0].createSession(Self.id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)

            let turnsPerWriter = 40
            let endings = SharedList<LedgerStatus>()
            await withTaskGroup(of: Void.self) { group in
                for writer in 0..<4 {
                    for node in nodes {
                        group.addTask {
                            for turn in 0..<turnsPerWriter {
                                let key = "w\(writer)-t\(turn)"
                                _ = try? await node.appendTurn(Self.id, Self.draft(key, key: key), nowMilliseconds: 0)
                            }
                        }
                    }
                }
                // Each node ends the same call differently; exactly one wins.
                for (node, status) in zip(nodes, [LedgerStatus.succeeded, .failed]) {
                    group.addTask {
                        let write = LedgerWrite(callID: "c", name: "t", status: status)
                        if (try? await node.writeLedgerEntry(Self.id, write, nowMilliseconds: 0))?.applied == true {
                            endings.append(status)
                        }
                    }
                }
            }

            let turns = try await nodes[1].readTurns(Self.id, .all).turns
            #expect(turns.count == 4 * turnsPerWriter)
            #expect(Set(turns.map(\.content)).count == 4 * turnsPerWriter)
            #expect(turns.map(\.stamp.seq) == Array(turns.map(\.stamp.seq).sorted()))
            #expect(Set(turns.map(\.stamp.seq)).count == turns.count)
            #expect(try await nodes[0].sessionInfo(Self.id).lastStamp.seq == UInt64(turns.count + 1))
            let winners = endings.all
            #expect(winners.count == 1)
            let ledger = try await nodes[0].ledgerEntry(Self.id, callID: "c")
            #expect(winners == [ledger.status])
        }
    }

    @Test func rewriteRetriesWhenAnotherClientWrites() async throws {
        try await Self.withServer { server, _, stores in
            let store = stores.add(try RedisSessionStore(configuration: server.configuration(keyPrefix: "watch"), logger: Self.logger))
            _ = try await store.createSession(Self.id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
            let meta = store.keys.meta(for: Self.id)

            // The first attempt writes to the session behind the store's back
            // between its read and its write, so EXEC fails and it reads again.
            let attempts = try await store.onThread(Self.id) { connection throws(RedisError) in
                var attempts = 0
                let outcome = try store.rewrite(Self.id, on: connection) { stored -> (Int, write: Bool) in
                    attempts += 1
                    if attempts == 1 { _ = try? server.command("HINCRBY", meta, "seq", "10") }
                    stored?.record.values["v"] = SessionValue(
                        name: "v", value: .integer(Int64(attempts)), stamp: SessionStamp(epoch: 1, seq: 99), updatedAtMilliseconds: 0)
                    return (attempts, true)
                }
                return outcome
            }
            #expect(attempts == 2)
            #expect(try await store.value(Self.id, name: "v").value == .integer(2))
            // The concurrent write was read again, not overwritten.
            #expect(try await store.sessionInfo(Self.id).lastStamp.seq == 10)
        }
    }

    // MARK: Failures

    @Test func killedServerIsUnavailableThenRecovers() async throws {
        try await Self.withServer { server, _, stores in
            let store = stores.add(try RedisSessionStore(configuration: server.configuration(keyPrefix: "kill"), logger: Self.logger))
            _ = try await store.createSession(Self.id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)

            // Writers keep appending while the server is killed under them.
            let acknowledged = SharedList<String>()
            let otherErrors = SharedList<String>()
            let unavailable = SharedList<String>()
            await withTaskGroup(of: Void.self) { group in
                for writer in 0..<4 {
                    group.addTask {
                        for index in 0..<150 {
                            let content = "w\(writer)-\(index)"
                            do throws(SessionStoreError) {
                                _ = try await store.appendTurn(Self.id, Self.draft(content, key: content), nowMilliseconds: 0)
                                acknowledged.append(content)
                            } catch {
                                if error.code == .storeUnavailable {
                                    unavailable.append(content)
                                } else {
                                    otherErrors.append(error.description)
                                }
                            }
                        }
                    }
                }
                group.addTask {
                    while acknowledged.all.count < 40 {
                        try? await Task.sleep(for: .milliseconds(1))
                    }
                    server.kill()
                }
            }
            #expect(otherErrors.all.isEmpty)
            #expect(!unavailable.all.isEmpty)

            // While it is down, every operation fails at once with a 503.
            let down = await #expect(throws: SessionStoreError.self) { try await store.readTurns(Self.id, .all) }
            #expect(down?.code == .storeUnavailable)
            #expect(down.map { ProblemDetails.from($0).status } == 503)
            #expect(down?.detail.contains("127.0.0.1:\(server.port)") == true)

            // Back on the same port with its append-only file, it has every
            // acknowledged append, and the store reconnects by itself.
            try await server.restart()
            let turns = try await Self.eventually { () async throws(SessionStoreError) in
                try await store.readTurns(Self.id, .all).turns
            }
            #expect(Set(acknowledged.all).isSubset(of: Set(turns.map(\.content))))
            #expect(turns.map(\.stamp.seq) == Array(1...UInt64(turns.count)))
            let next = try await store.appendTurn(Self.id, Self.draft("after"), nowMilliseconds: 0)
            #expect(next.turn.stamp.seq == UInt64(turns.count + 1))
        }
    }

    @Test func pausedServerTimesOut() async throws {
        try await Self.withServer { server, _, stores in
            var configuration = server.configuration(keyPrefix: "pause")
            configuration.commandTimeout = .milliseconds(300)
            let store = stores.add(try RedisSessionStore(configuration: configuration, logger: Self.logger))
            _ = try await store.createSession(Self.id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)

            server.pause()
            let details = SharedList<String>()
            let codes = SharedList<SessionStoreError.Code?>()
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<6 {
                    group.addTask {
                        do throws(SessionStoreError) {
                            _ = try await store.appendTurn(Self.id, Self.draft("x"), nowMilliseconds: 0)
                            codes.append(nil)
                        } catch {
                            codes.append(error.code)
                            details.append(error.detail)
                        }
                    }
                }
            }
            server.resume()

            #expect(codes.all == Array(repeating: .storeUnavailable, count: 6))
            #expect(details.all.contains { $0.contains("did not reply within") })
            let info = try await Self.eventually { () async throws(SessionStoreError) in try await store.sessionInfo(Self.id) }
            // The first append may have run before the timeout; no other did.
            #expect(info.turnCount <= 1)
        }
    }

    @Test func waitingCallsLeaveConcurrencyPoolFree() async throws {
        try await Self.withServer { server, _, stores in
            var configuration = server.configuration(keyPrefix: "pool", threadCount: 3)
            configuration.commandTimeout = .seconds(30)
            let store = stores.add(try RedisSessionStore(configuration: configuration, logger: Self.logger))
            let ids = (0..<6).map { SessionID("waiting-\($0)")! }
            for id in ids {
                _ = try await store.createSession(id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
            }

            // Six calls wait on a paused server, more than the concurrency
            // pool's threads. Had they blocked those threads, the calls not
            // yet started and this task could not run until the timeout.
            server.pause()
            let events = SharedList<String>()
            await withTaskGroup(of: Void.self) { group in
                for id in ids {
                    group.addTask {
                        events.append("call started")
                        let appended = try? await store.appendTurn(id, Self.draft("x"), nowMilliseconds: 0)
                        events.append(appended == nil ? "call failed" : "call returned")
                    }
                }
                while events.all.count < ids.count {
                    try? await Task.sleep(for: .milliseconds(1))
                }
                events.append("other task ran")
                server.resume()
            }

            #expect(events.all.prefix(7) == ArraySlice(Array(repeating: "call started", count: 6) + ["other task ran"]))
            #expect(events.all.filter { $0 == "call returned" }.count == 6)
        }
    }

    @Test func closedPortIsUnavailable() async throws {
        let closed = try LoopbackPortReservation()
        let store = try RedisSessionStore(
            configuration: RedisSessionStore.Configuration(port: Int(closed.port), keyPrefix: "closed", threadCount: 1),
            logger: Self.logger)
        defer { store.shutdown() }

        let error = await #expect(throws: SessionStoreError.self) {
            try await store.createSession(Self.id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        }
        #expect(error?.code == .storeUnavailable)
        #expect(error?.session == Self.id)
        #expect(error?.detail.contains("cannot connect to Redis at 127.0.0.1:\(closed.port)") == true)
        let listing = await SessionStoreContract.errorCode { () async throws(SessionStoreError) in try await store.sessionIDs() }
        #expect(listing == .storeUnavailable)
    }

    @Test func flushedScriptCacheIsReloaded() async throws {
        try await Self.withServer { server, make, _ in
            let store = try await SessionStoreContract.storeWithSession(make)
            _ = try await store.appendTurn(Self.id, Self.draft("a"), nowMilliseconds: 0)
            #expect(try server.command("SCRIPT", "FLUSH") == .status("OK"))
            #expect(try await store.appendTurn(Self.id, Self.draft("b"), nowMilliseconds: 0).turn.stamp.seq == 2)
            #expect(try await SessionStoreContract.contents(store) == ["a", "b"])
        }
    }

    @Test func foreignDataIsAnErrorNotACrash() async throws {
        try await Self.withServer { server, _, stores in
            let store = stores.add(try RedisSessionStore(configuration: server.configuration(keyPrefix: "foreign"), logger: Self.logger))
            _ = try await store.createSession(Self.id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
            let keys = store.keys.keys(for: Self.id)

            // A record in another format.
            _ = try server.command("RPUSH", keys[1], "not a turn")
            let malformed = await #expect(throws: SessionStoreError.self) { try await store.readTurns(Self.id, .all) }
            #expect(malformed?.code == .storeUnavailable)
            #expect(malformed?.detail.contains("not in the format") == true)

            // A key of the wrong type makes the script fail inside Redis.
            _ = try server.command("SET", keys[4], "a string")
            let wrongType = await #expect(throws: SessionStoreError.self) {
                try await store.writeLedgerEntry(Self.id, LedgerWrite(callID: "c", name: "t", status: .running), nowMilliseconds: 0)
            }
            #expect(wrongType?.code == .storeUnavailable)
            #expect(wrongType?.detail.contains("WRONGTYPE") == true)

            // Other operations of the session still work.
            #expect(try await store.putValue(Self.id, name: "v", value: .null, nowMilliseconds: 0).stamp.seq == 1)
        }
    }

    @Test func configurationRejectsInvalidFields() {
        let cases: [(String, (inout RedisSessionStore.Configuration) -> Void)] = [
            ("redis.host", { $0.host = "" }),
            ("redis.host", { $0.host = "bad host" }),
            ("redis.port", { $0.port = 0 }),
            ("redis.port", { $0.port = 65536 }),
            ("redis.keyPrefix", { $0.keyPrefix = "" }),
            ("redis.keyPrefix", { $0.keyPrefix = "a{b}" }),
            ("redis.keyPrefix", { $0.keyPrefix = "has space" }),
            ("redis.keyPrefix", { $0.keyPrefix = String(repeating: "p", count: 65) }),
            ("redis.threadCount", { $0.threadCount = 0 }),
            ("redis.threadCount", { $0.threadCount = 65 }),
            ("redis.connectTimeout", { $0.connectTimeout = .zero }),
            ("redis.commandTimeout", { $0.commandTimeout = .seconds(601) }),
            ("redis.reconnectDelay", { $0.reconnectDelay = .seconds(-1) }),
        ]
        for (field, change) in cases {
            var configuration = RedisSessionStore.Configuration()
            change(&configuration)
            let error = #expect(throws: ConfigurationError.self) {
                _ = try RedisSessionStore(configuration: configuration, logger: Self.logger)
            }
            #expect(error?.field == field)
        }
        #expect(throws: Never.self) { try RedisSessionStore.Configuration().validate() }
    }
}
