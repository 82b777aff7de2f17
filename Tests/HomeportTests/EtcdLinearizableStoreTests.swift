import Foundation
import Testing

@testable import Homeport

/// The etcd store against real etcd processes that the tests start on
/// loopback (see `EtcdServer`). Every test that needs etcd fails, rather than
/// skips, when it is not installed.
///
/// The tests run one at a time, each with its own etcd, so that they add
/// one etcd process to the machine's load instead of a dozen at once.
@Suite(.serialized, .timeLimit(.minutes(2))) struct EtcdLinearizableStoreTests {
    static func makeStore(
        _ endpoints: [EtcdLinearizableStore.Endpoint], requestTimeout: Duration = .seconds(5), logger: Logger? = nil
    ) throws -> EtcdLinearizableStore {
        var configuration = EtcdLinearizableStore.Configuration(endpoints: endpoints)
        configuration.requestTimeout = requestTimeout
        return try EtcdLinearizableStore(configuration: configuration, logger: logger)
    }

    /// A fixture whose time is real time. With a proxy, `setAvailable` cuts
    /// and restores the network path while etcd keeps running, as in a
    /// partition. Without one, the fixture cannot simulate a partition.
    static func makeFixture(store: EtcdLinearizableStore, proxy: PartitionProxy?) -> LinearizableStoreFixture {
        var setAvailable: (@Sendable (Bool) async throws -> Void)?
        if let proxy {
            setAvailable = { available in available ? proxy.restore() : proxy.cut() }
        }
        return LinearizableStoreFixture(
            store: store,
            advanceTime: { try await Task.sleep(for: $0) },
            setAvailable: setAvailable,
            keyPrefix: "conformance/"
        )
    }

    // MARK: Contract

    /// Each check gets a fresh server, because the checks compare absolute revisions.
    @Test("etcd store meets the contract", arguments: LinearizableStoreContract.allCases.filter { !$0.advancesTime })
    func contract(_ contract: LinearizableStoreContract) async throws {
        let server = try await EtcdServer.start()
        defer { server.stop() }
        let store = try Self.makeStore([server.endpoint])

        try await contract.check { Self.makeFixture(store: store, proxy: nil) }
    }

    // MARK: Failures of the server

    @Test func pausedServerTimesOut() async throws {
        let server = try await EtcdServer.start()
        defer { server.stop() }
        let store = try Self.makeStore([server.endpoint], requestTimeout: .milliseconds(300))
        _ = try await store.put("k", value: [1])

        server.pause()
        let clock = ContinuousClock()
        // Far above the 300 ms timeout, because other tests' blocking calls
        // can stall the Swift concurrency pool for seconds, yet far below a
        // hang: without a timeout the calls would wait as long as the pause.
        let bound = Duration.seconds(10)

        let readStart = clock.now
        let read = await #expect(throws: LinearizableStoreError.self) {
            try await store.get("k")
        }
        #expect(read?.code == .unavailable)
        #expect(read?.message.contains(server.endpoint.description) == true)
        #expect(read?.message.contains("timed-out") == true)
        #expect(clock.now - readStart < bound)

        let writeStart = clock.now
        let write = await #expect(throws: LinearizableStoreError.self) {
            try await store.put("k", value: [2])
        }
        #expect(write?.code == .unavailable)
        #expect(write?.message.contains("may or may not have been applied") == true)
        #expect(clock.now - writeStart < bound)

        // The store recovers once the server runs again.
        server.resume()
        #expect(try await store.get("k") != nil)
    }

    @Test func stoppedServerIsUnavailableAtOnce() async throws {
        let server = try await EtcdServer.start()
        // A refused connection fails at once, so the calls below end well
        // before this timeout even on a loaded machine.
        let store = try Self.makeStore([server.endpoint], requestTimeout: .seconds(30))
        _ = try await store.put("k", value: [1])
        let endpoint = server.endpoint.description
        server.stop()

        let clock = ContinuousClock()
        let start = clock.now

        // The pooled connection is closed and a new one is refused.
        let read = await #expect(throws: LinearizableStoreError.self) {
            try await store.get("k")
        }
        #expect(read?.code == .unavailable)
        #expect(read?.message.contains(endpoint) == true)
        #expect(read?.message.contains("Retry") == true)

        let write = await #expect(throws: LinearizableStoreError.self) {
            try await store.put("k", value: [2])
        }
        #expect(write?.code == .unavailable)
        #expect(write?.message.contains("was not sent") == true)

        let lease = await #expect(throws: LinearizableStoreError.self) {
            try await store.grantLease(ttl: .seconds(5))
        }
        #expect(lease?.code == .unavailable)
        #expect(clock.now - start < .seconds(10))
    }

    @Test func nextMemberServesWhenFirstIsClosed() async throws {
        let server = try await EtcdServer.start()
        defer { server.stop() }
        let closed = try LoopbackPortReservation()
        let closedEndpoint = EtcdLinearizableStore.Endpoint(host: "127.0.0.1", port: closed.port)
        let log = Pipe()
        let logger = Logger(label: "etcd", sink: LogSink(descriptor: log.fileHandleForWriting.fileDescriptor, minimumLevel: .warning))
        let store = try Self.makeStore([closedEndpoint, server.endpoint], logger: logger)

        // The write was never sent to the closed port, so it may go on to the live member.
        let revision = try await store.put("k", value: [1])
        #expect(try await store.get("k")?.modRevision == revision)
        #expect(try await store.currentRevision() == revision)

        // Only the first call tried the closed port, because the others start at the member that served it.
        try log.fileHandleForWriting.close()
        let lines = String(decoding: log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 1)
        #expect(lines.first?.contains("etcd member failed, trying the next") == true)
        #expect(lines.first?.contains(closedEndpoint.description) == true)
    }

    @Test func everyMemberClosedNamesEachOne() async throws {
        let first = try LoopbackPortReservation()
        let second = try LoopbackPortReservation()
        let store = try Self.makeStore([
            EtcdLinearizableStore.Endpoint(host: "127.0.0.1", port: first.port),
            EtcdLinearizableStore.Endpoint(host: "127.0.0.1", port: second.port),
        ])

        let error = await #expect(throws: LinearizableStoreError.self) {
            try await store.put("k", value: [1])
        }
        #expect(error?.code == .unavailable)
        #expect(error?.message.contains("127.0.0.1:\(first.port)") == true)
        #expect(error?.message.contains("127.0.0.1:\(second.port)") == true)
        #expect(error?.message.contains("put of key \"k\"") == true)
        #expect(error?.cause is HTTPClientError)
    }

    // MARK: Sizes, TTLs and unusual input

    @Test func maximumValueNeedsRaisedRequestLimit() async throws {
        let value = [UInt8](repeating: 7, count: LinearizableStoreLimits.maximumValueBytes)

        // etcd's default --max-request-bytes is the value limit itself, so
        // the key and the framing push the request over it.
        let defaultServer = try await EtcdServer.start()
        defer { defaultServer.stop() }
        let defaultStore = try Self.makeStore([defaultServer.endpoint])
        let rejected = await #expect(throws: LinearizableStoreError.self) {
            try await defaultStore.put("large", value: value)
        }
        #expect(rejected?.code == .valueTooLarge)
        #expect(rejected?.message.contains("--max-request-bytes") == true)
        #expect(try await defaultStore.get("large") == nil)

        let raisedServer = try await EtcdServer.start(maximumRequestBytes: 2 << 20)
        defer { raisedServer.stop() }
        let raisedStore = try Self.makeStore([raisedServer.endpoint])
        _ = try await raisedStore.put("large", value: value)
        #expect(try await raisedStore.get("large")?.value == value)
    }

    @Test func leaseTTLRoundsUpToWholeSeconds() async throws {
        let server = try await EtcdServer.start()
        defer { server.stop() }
        let store = try Self.makeStore([server.endpoint])

        #expect(try await store.grantLease(ttl: .milliseconds(1200)).ttl == .seconds(2))
        #expect(try await store.grantLease(ttl: .seconds(7)).ttl == .seconds(7))
        // The test server's minimum TTL is 1 s.
        #expect(try await store.grantLease(ttl: .nanoseconds(1)).ttl == .seconds(1))

        let lease = try await store.grantLease(ttl: .seconds(30))
        let status = try await store.leaseTimeToLive(lease.id)
        #expect(status.grantedTTL == .seconds(30))
        #expect(status.remainingTTL <= .seconds(30))
        #expect(status.remainingTTL >= .seconds(28))
    }

    @Test func unusualKeysAndValuesRoundTrip() async throws {
        let server = try await EtcdServer.start()
        defer { server.stop() }
        let store = try Self.makeStore([server.endpoint])
        let everyByte = (0...255).map(UInt8.init)

        for key in ["nul\u{0}inside", "é", "e\u{301}", "🙂/emoji", "quote\"and\\backslash", "/", " "] {
            _ = try await store.put(key, value: everyByte)
            let read = try #require(try await store.get(key), "\(key.debugDescription)")
            #expect(read.key == key, "\(key.debugDescription)")
            #expect(read.value == everyByte, "\(key.debugDescription)")
        }

        // NFC "é" and NFD "e" + U+0301 are two keys.
        #expect(try await store.range(prefix: "é").count == 1)
        #expect(try await store.range(prefix: "e").count == 1)
        #expect(try await store.range(prefix: "").count == 7)
    }

    @Test func foreignBinaryKeyFailsRangeClearly() async throws {
        let server = try await EtcdServer.start()
        defer { server.stop() }
        let store = try Self.makeStore([server.endpoint])
        _ = try await store.put("shared/ok", value: [1])

        // Another etcd client writes a key that is not UTF-8 under the same prefix.
        let client = HTTPClient(timeout: .seconds(5))
        let body = JSONValue.object(["key": .string(Data(Array("shared/".utf8) + [0xFF, 0xFE]).base64EncodedString())])
        let written = try await client.send(
            HTTPRequest(method: "POST", path: "/v3/kv/put", body: body.serializedBytes()), host: "127.0.0.1", port: server.clientPort)
        #expect(written.status == 200)

        let error = await #expect(throws: LinearizableStoreError.self) {
            try await store.range(prefix: "shared/")
        }
        #expect(error?.code == .unexpectedResponse)
        #expect(error?.message.contains("kvs[1].key is not valid UTF-8") == true)
        #expect(try await store.get("shared/ok")?.value == [1])
    }

    @Test func leaseZeroIsNotFound() async throws {
        let server = try await EtcdServer.start()
        defer { server.stop() }
        let store = try Self.makeStore([server.endpoint])
        let revision = try await store.currentRevision()

        // etcd reads lease 0 as "no lease", so the store must not send it.
        let put = await #expect(throws: LinearizableStoreError.self) {
            try await store.put("k", value: [1], lease: LeaseID(rawValue: 0))
        }
        #expect(put?.code == .leaseNotFound)

        let keepAlive = await #expect(throws: LinearizableStoreError.self) {
            try await store.keepAlive(LeaseID(rawValue: 0))
        }
        #expect(keepAlive?.code == .leaseNotFound)
        #expect(try await store.currentRevision() == revision)
    }

    // MARK: Configuration

    @Test func configurationRejectsInvalidFields() {
        let valid = EtcdLinearizableStore.Endpoint(host: "127.0.0.1", port: 2379)
        var cases: [(configuration: EtcdLinearizableStore.Configuration, field: String)] = []

        cases.append((EtcdLinearizableStore.Configuration(endpoints: []), "etcd.endpoints"))
        cases.append(
            (EtcdLinearizableStore.Configuration(endpoints: [valid, .init(host: "etcd.internal", port: 2379)]), "etcd.endpoints[1].host"))
        cases.append((EtcdLinearizableStore.Configuration(endpoints: [.init(host: "127.0.0.1", port: 0)]), "etcd.endpoints[0].port"))
        var zeroTimeout = EtcdLinearizableStore.Configuration(endpoints: [valid])
        zeroTimeout.requestTimeout = .zero
        cases.append((zeroTimeout, "etcd.requestTimeout"))
        var noThreads = EtcdLinearizableStore.Configuration(endpoints: [valid])
        noThreads.maximumConcurrentRequests = 0
        cases.append((noThreads, "etcd.maximumConcurrentRequests"))

        for (configuration, field) in cases {
            let error = #expect(throws: ConfigurationError.self, "\(field)") {
                try configuration.validate()
            }
            #expect(error?.field == field)
        }

        #expect(throws: Never.self) {
            try EtcdLinearizableStore.Configuration(endpoints: [valid, .init(host: "localhost", port: 2380)]).validate()
        }
    }
}

/// The contract checks that wait for leases. They sleep for real, up to 17 s
/// each, so they run in parallel, each with its own server behind its own
/// proxy.
@Suite(.timeLimit(.minutes(2))) struct EtcdLinearizableStoreTimedTests {
    @Test("etcd store meets the timed contract", arguments: LinearizableStoreContract.allCases.filter(\.advancesTime))
    func timedContract(_ contract: LinearizableStoreContract) async throws {
        let server = try await EtcdServer.start()
        defer { server.stop() }
        let proxy = try PartitionProxy(targetPort: server.clientPort)
        defer { proxy.close() }
        let store = try EtcdLinearizableStoreTests.makeStore([EtcdLinearizableStore.Endpoint(host: "127.0.0.1", port: proxy.port)])

        try await contract.check { EtcdLinearizableStoreTests.makeFixture(store: store, proxy: proxy) }
    }
}

/// The store against a fake gateway on loopback that returns malformed or
/// unusual responses, which a real etcd does not produce on demand.
@Suite struct EtcdGatewayResponseTests {
    /// A response the fake gateway returns for every request.
    struct CannedResponse: Sendable, CustomStringConvertible {
        let status: Int
        let body: String
        let description: String
    }

    static let header = #""header":{"cluster_id":"1","member_id":"2","revision":"9","raft_term":"2"}"#

    /// Starts a gateway that returns `response` for every path.
    static func withFakeGateway(
        _ response: CannedResponse, _ body: (EtcdLinearizableStore) async throws -> Void
    ) async throws {
        let server = HTTPServer(configuration: HTTPServerConfiguration(), logger: Logger(label: "fake-etcd", sink: .discarding)) { _ in
            HTTPResponse(status: response.status, headers: [("Content-Type", "application/json")], body: Array(response.body.utf8))
        }
        let port = try server.start()
        // The gateway's handler runs on the Swift concurrency pool, which
        // other tests' blocking calls can stall for seconds, so the timeout is generous.
        let store = try EtcdLinearizableStoreTests.makeStore(
            [EtcdLinearizableStore.Endpoint(host: "127.0.0.1", port: port)], requestTimeout: .seconds(20))
        do {
            try await body(store)
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    static let malformedGets: [(response: CannedResponse, messagePart: String)] = [
        (CannedResponse(status: 200, body: "not json", description: "body not JSON"), "not valid JSON"),
        (CannedResponse(status: 200, body: "[]", description: "body an array"), "the response is array"),
        (CannedResponse(status: 200, body: #"{"kvs":[]}"#, description: "no header"), "no header"),
        (
            CannedResponse(
                status: 200,
                body: #"{\#(header),"kvs":[{"key":"aw==","create_revision":"2","mod_revision":"2","version":"1","value":"@@"}]}"#,
                description: "value not base64"),
            "kvs[0].value is not valid base64"
        ),
        (
            CannedResponse(
                status: 200, body: #"{\#(header),"kvs":[{"key":"aw==","create_revision":"2","mod_revision":"2x","version":"1"}]}"#,
                description: "revision not a number"),
            "kvs[0].mod_revision is \"2x\""
        ),
        (
            CannedResponse(
                status: 200, body: #"{\#(header),"kvs":[{"key":"aw==","create_revision":2.5,"mod_revision":"2","version":"1"}]}"#,
                description: "revision a fraction"),
            "kvs[0].create_revision is number"
        ),
        (
            CannedResponse(status: 200, body: #"{\#(header),"kvs":[{"key":"aw==","value":"eA=="}]}"#, description: "revisions missing"),
            "kvs[0].create_revision of key \"k\" is 0"
        ),
        (
            CannedResponse(
                status: 200, body: #"{\#(header),"kvs":[{"key":"bQ==","create_revision":"2","mod_revision":"2","version":"1"}]}"#,
                description: "another key"),
            "returned key \"m\""
        ),
        (
            CannedResponse(status: 200, body: #"{\#(header),"kvs":{"key":"aw=="}}"#, description: "kvs an object"),
            "kvs is object, but it should be an array"
        ),
        (
            CannedResponse(status: 404, body: "Not Found", description: "unknown path"),
            "HTTP 404 to POST /v3/kv/range"
        ),
        (
            CannedResponse(
                status: 403, body: #"{"error":"etcdserver: permission denied","message":"etcdserver: permission denied","code":7}"#,
                description: "permission denied"),
            "gRPC code 7: etcdserver: permission denied"
        ),
    ]

    @Test("malformed range response is unexpectedResponse", arguments: malformedGets)
    func malformedGet(_ response: CannedResponse, messagePart: String) async throws {
        try await Self.withFakeGateway(response) { store in
            let error = await #expect(throws: LinearizableStoreError.self) {
                try await store.get("k")
            }
            #expect(error?.code == .unexpectedResponse)
            #expect(error?.message.contains(messagePart) == true, "\(error?.message ?? "no error")")
            #expect(error?.message.contains("get of key \"k\"") == true)
        }
    }

    @Test func transactionResponseMustMatchBranch() async throws {
        let putOnly = CannedResponse(
            status: 200, body: #"{\#(Self.header),"succeeded":true,"responses":[{"response_put":{"header":{"revision":"9"}}}]}"#,
            description: "one put response")

        try await Self.withFakeGateway(putOnly) { store in
            let tooFew = await #expect(throws: LinearizableStoreError.self) {
                try await store.transaction(compares: [], success: [.put("a", value: [1]), .get("a")], failure: [])
            }
            #expect(tooFew?.code == .unexpectedResponse)
            #expect(tooFew?.message.contains("responses has 1 entries for a branch of 2 operations") == true)

            let wrongKind = await #expect(throws: LinearizableStoreError.self) {
                try await store.transaction(compares: [], success: [.delete("a")], failure: [])
            }
            #expect(wrongKind?.code == .unexpectedResponse)
            #expect(wrongKind?.message.contains("responses[0].response_delete_range is missing") == true)

            let matching = try await store.transaction(compares: [], success: [.put("b", value: [2])], failure: [])
            #expect(matching.succeeded)
            #expect(matching.results == [.put(revision: 9)])
        }

        // A response without "succeeded" means the failure branch ran.
        let failedCompare = CannedResponse(status: 200, body: #"{\#(Self.header)}"#, description: "failed compare")
        try await Self.withFakeGateway(failedCompare) { store in
            let result = try await store.transaction(compares: [.exists("a")], success: [.put("a", value: [1])], failure: [])
            #expect(!result.succeeded)
            #expect(result.revision == 9)
            #expect(result.results.isEmpty)
        }
    }

    @Test func gatewayErrorsMapToCodes() async throws {
        let leaseMissing = CannedResponse(
            status: 404,
            body: #"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#,
            description: "lease not found")
        try await Self.withFakeGateway(leaseMissing) { store in
            let error = await #expect(throws: LinearizableStoreError.self) {
                try await store.put("k", value: [1], lease: LeaseID(rawValue: 77))
            }
            #expect(error?.code == .leaseNotFound)
            #expect(error?.message.contains("lease 77") == true)
        }

        let noLeader = CannedResponse(
            status: 503, body: #"{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}"#, description: "no leader")
        try await Self.withFakeGateway(noLeader) { store in
            let error = await #expect(throws: LinearizableStoreError.self) {
                try await store.get("k")
            }
            #expect(error?.code == .unavailable)
            #expect(error?.message.contains("gRPC code 14: etcdserver: no leader") == true)
        }

        let duplicate = CannedResponse(
            status: 400,
            body:
                #"{"error":"etcdserver: duplicate key given in txn request","message":"etcdserver: duplicate key given in txn request","code":3}"#,
            description: "invalid argument")
        try await Self.withFakeGateway(duplicate) { store in
            let error = await #expect(throws: LinearizableStoreError.self) {
                try await store.delete("k")
            }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.contains("duplicate key") == true)
        }
    }

    @Test func leaseResponsesAreChecked() async throws {
        let badKeys = CannedResponse(
            status: 200, body: #"{\#(Self.header),"ID":"5","TTL":"3","grantedTTL":"10","keys":["YQ==","%%"]}"#, description: "bad lease key"
        )
        try await Self.withFakeGateway(badKeys) { store in
            let error = await #expect(throws: LinearizableStoreError.self) {
                try await store.leaseTimeToLive(LeaseID(rawValue: 5))
            }
            #expect(error?.code == .unexpectedResponse)
            #expect(error?.message.contains("keys[1] is not valid base64") == true)
        }

        let shortGrant = CannedResponse(status: 200, body: #"{\#(Self.header),"ID":"5","TTL":"1"}"#, description: "shorter TTL")
        try await Self.withFakeGateway(shortGrant) { store in
            let error = await #expect(throws: LinearizableStoreError.self) {
                try await store.grantLease(ttl: .seconds(10))
            }
            #expect(error?.code == .unexpectedResponse)
            #expect(error?.message.contains("shorter than the 10 s requested") == true)
        }

        let otherLease = CannedResponse(status: 200, body: #"{"result":{\#(Self.header),"ID":"6","TTL":"10"}}"#, description: "other lease")
        try await Self.withFakeGateway(otherLease) { store in
            let error = await #expect(throws: LinearizableStoreError.self) {
                try await store.keepAlive(LeaseID(rawValue: 5))
            }
            #expect(error?.code == .unexpectedResponse)
            #expect(error?.message.contains("result.ID is 6") == true)
        }
    }
}

/// The JSON encoding of requests, checked without a server.
@Suite struct EtcdGatewayJSONTests {
    @Test func rangeEndIsPrefixPlusOne() {
        #expect(EtcdGatewayJSON.rangeEnd(ofPrefix: Array("a/".utf8)) == Array("a0".utf8))
        #expect(EtcdGatewayJSON.rangeEnd(ofPrefix: [0x61, 0xFF]) == [0x62])
        #expect(EtcdGatewayJSON.rangeEnd(ofPrefix: [0x61, 0xFF, 0xFF]) == [0x62])
        #expect(EtcdGatewayJSON.rangeEnd(ofPrefix: [0xFF]) == [0])
    }

    @Test func emptyPrefixRangesOverEveryKey() {
        let request = EtcdGatewayJSON.prefixRangeRequest(prefix: "")
        #expect(request["key"] == .string("AA=="))
        #expect(request["range_end"] == .string("AA=="))

        let prefixed = EtcdGatewayJSON.prefixRangeRequest(prefix: "foo")
        #expect(prefixed["key"] == .string("Zm9v"))
        #expect(prefixed["range_end"] == .string("Zm9w"))
    }

    @Test func comparesUseEnumNamesAndStringNumbers() {
        #expect(
            EtcdGatewayJSON.compare(.modRevision("k", equals: 12))
                == .object(["key": .string("aw=="), "target": .string("MOD"), "result": .string("EQUAL"), "mod_revision": .string("12")]))
        #expect(
            EtcdGatewayJSON.compare(.exists("k"))
                == .object([
                    "key": .string("aw=="), "target": .string("CREATE"), "result": .string("GREATER"), "create_revision": .string("0"),
                ]))
        #expect(
            EtcdGatewayJSON.compare(.absent("k"))
                == .object(["key": .string("aw=="), "target": .string("VERSION"), "result": .string("EQUAL"), "version": .string("0")]))
        #expect(
            EtcdGatewayJSON.compare(.value("k", equals: [0xFF]))
                == .object(["key": .string("aw=="), "target": .string("VALUE"), "result": .string("EQUAL"), "value": .string("/w==")]))
        #expect(
            EtcdGatewayJSON.compare(.versionLess("k", than: 3))
                == .object(["key": .string("aw=="), "target": .string("VERSION"), "result": .string("LESS"), "version": .string("3")]))
    }

    @Test func rangeOperationSetsStartLimitAndOrder() {
        #expect(
            EtcdGatewayJSON.operation(.range(KeyRange(prefix: "foo")))
                == .object(["request_range": .object(["key": .string("Zm9v"), "range_end": .string("Zm9w")])]))
        #expect(
            EtcdGatewayJSON.rangeRequest(KeyRange(prefix: "foo", start: "foo1", limit: 2, descending: true))
                == .object([
                    "key": .string("Zm9vMQ=="), "range_end": .string("Zm9w"), "limit": .string("2"), "sort_order": .string("DESCEND"),
                    "sort_target": .string("KEY"),
                ]))
        #expect(EtcdGatewayJSON.rangeRequest(KeyRange(prefix: "")) == .object(["key": .string("AA=="), "range_end": .string("AA==")]))
    }
}
