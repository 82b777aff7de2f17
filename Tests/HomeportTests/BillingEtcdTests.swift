import Foundation
import Testing

@testable import Homeport

/// The billing counters against real etcd processes started on loopback
/// (see `EtcdServer`). The tests run one at a time, each with its own etcd.
@Suite(.serialized, .timeLimit(.minutes(2))) struct BillingEtcdTests {
    static func makeStore(_ port: UInt16, requestTimeout: Duration = .seconds(5)) throws -> EtcdLinearizableStore {
        var configuration = EtcdLinearizableStore.Configuration(endpoints: [EtcdLinearizableStore.Endpoint(host: "127.0.0.1", port: port)])
        configuration.requestTimeout = requestTimeout
        return try EtcdLinearizableStore(configuration: configuration)
    }

    @Test("etcd counts each record once", arguments: BillingScenario.allCases)
    func scenario(_ scenario: BillingScenario) async throws {
        let server = try await EtcdServer.start()
        defer { server.stop() }

        try await scenario.run(on: try Self.makeStore(server.clientPort))
    }

    /// A real network cut between the region and etcd: the flush and the
    /// totals read fail with `storeUnavailable` (503), recording goes on,
    /// and the periodic flush sends the records once the path is back.
    @Test func partitionFromEtcd() async throws {
        let server = try await EtcdServer.start()
        defer { server.stop() }
        let proxy = try PartitionProxy(targetPort: server.clientPort)
        defer { proxy.close() }
        let tenant = TenantID("acme")!
        let direct = try Self.makeStore(server.clientPort)
        let recorder = try BillingFixture.makeRecorder(
            region: "us-east", store: try Self.makeStore(proxy.port, requestTimeout: .milliseconds(500))
        ) { $0.flushInterval = .milliseconds(20) }

        try BillingFixture.record(1...5, of: tenant, at: recorder)
        try await recorder.flush()

        proxy.cut()
        try BillingFixture.record(6...25, of: tenant, at: recorder)
        let flushFailure = await #expect(throws: BillingError.self) { try await recorder.flush() }
        #expect(flushFailure?.code == .storeUnavailable)
        let readFailure = await #expect(throws: BillingError.self) { try await recorder.totals(of: tenant) }
        #expect(readFailure?.code == .storeUnavailable)
        #expect(recorder.unflushedRecordCount == 20)

        let handler = BillingRequestHandler(recorder: recorder)
        let response = await BillingRequestHandlerTests.respond(
            handler, HTTPRequest(method: "GET", path: "/v1/tenants/acme/usage/totals"))
        #expect(response.status == 503)

        proxy.restore()
        recorder.start()
        try await BillingFixture.waitUntil("the periodic flush sent the buffered records") { recorder.unflushedRecordCount == 0 }
        await recorder.stop()

        let stored = try await BillingFixture.storedTotals(tenant, in: direct)
        let expected = BillingFixture.expected(tenant, 1...25)
        #expect(stored.tokens == expected.tokens)
        #expect(stored.records == expected.records)
    }

    /// Markers and request keys carry a lease that etcd grants and expires.
    @Test func retentionLeaseOnEtcd() async throws {
        let server = try await EtcdServer.start()
        defer { server.stop() }
        let store = try Self.makeStore(server.clientPort)
        let tenant = TenantID("acme")!
        let recorder = try BillingFixture.makeRecorder(region: "us-east", store: store) {
            $0.deduplicationWindow = .seconds(60)
            $0.leaseRotationInterval = .seconds(10)
        }

        try BillingFixture.record(1...3, of: tenant, at: recorder)
        try await recorder.flush()

        let keys = try await store.range(prefix: BillingKeys.tenantPrefix(tenant))
        let leased = keys.filter { $0.lease != nil }
        #expect(leased.count == 4)
        let totals = keys.first { $0.key == BillingKeys.totals(tenant) }
        #expect(totals?.lease == nil)
        if let lease = leased.first?.lease {
            let status = try await store.leaseTimeToLive(lease)
            #expect(status.grantedTTL == .seconds(70))
        }
    }
}
