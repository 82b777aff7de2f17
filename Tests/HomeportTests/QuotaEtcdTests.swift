import Synchronization
import Testing

@testable import Homeport

/// The quota invariant against a real etcd that the test starts on
/// loopback: three regions, each with its own cuttable view of one etcd
/// store, real time, and one region that crashes part way. Fails, rather
/// than skips, when etcd is not installed.
@Suite(.serialized, .timeLimit(.minutes(2))) struct QuotaEtcdTests {
    static let tenant = TenantID.test("acme")
    static let limit: Int64 = 5000

    @Test func threeRegionsOnEtcdNeverOverspend() async throws {
        let server = try await EtcdServer.start()
        defer { server.stop() }
        let store = try EtcdLinearizableStore(configuration: EtcdLinearizableStore.Configuration(endpoints: [server.endpoint]))

        // A 2 s lease (etcd's minimum here is 1 s), renewed every 0.5 s.
        var configuration = QuotaService.Configuration.testing
        configuration.reservationTTL = .seconds(600)
        configuration.settleInterval = .milliseconds(300)
        configuration.lease.ttl = .seconds(2)
        configuration.lease.renewInterval = .milliseconds(500)
        configuration.lease.safetyMargin = .milliseconds(500)
        let logger = Logger(label: "quota-etcd-test", sink: .discarding)
        var regionViews: [String: PartitionableStoreView] = [:]
        var regionServices: [String: QuotaService] = [:]
        for region in QuotaTestCluster.regions {
            regionViews[region] = PartitionableStoreView(store)
            regionServices[region] = try QuotaService(
                region: region, store: regionViews[region]!, clock: SystemClock(), configuration: configuration, logger: logger)
        }
        let (views, services) = (regionViews, regionServices)
        for service in services.values {
            await service.step()
            service.start()
        }
        _ = try await services["us-east"]!.setPolicy(QuotaPolicy(limit: Self.limit, periodSeconds: 3600), for: Self.tenant)

        let failing = "ap-south"
        let survivors = ["us-east", "eu-west"]
        let failed = Atomic<Bool>(false)
        let finished = Atomic<Bool>(false)
        let violations = Mutex<[String]>([])
        let crash = Mutex<Task<Void, Never>?>(nil)

        // The monitor reads the record from etcd while clients run.
        let monitor = Task {
            while !finished.load(ordering: .acquiring) {
                if let keyValue = try? await store.get(QuotaRecord.key(of: Self.tenant)),
                    let violation = QuotaWorkload.invariantViolation(try? QuotaRecord.decode(keyValue.value, key: keyValue.key))
                {
                    violations.withLock { $0.append(violation) }
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }

        // 600 reservations of 1 to 30 tokens, about 9,300 tokens asked of
        // 5,000, from 30 concurrent clients. A quarter of the way in,
        // ap-south crashes: cut off, loop stopped.
        let workload = QuotaWorkload(tenant: Self.tenant, count: 600, maximumAmount: 30, seed: 11)
        let outcomes = try await workload.run(services: services, workers: 30) { index in
            let regions = failed.load(ordering: .acquiring) ? survivors : QuotaTestCluster.regions
            return regions[index % regions.count]
        } completed: { count in
            guard count == 150 else { return }
            views[failing]!.setReachable(false)
            failed.store(true, ordering: .releasing)
            crash.withLock { $0 = Task { await services[failing]!.stop() } }
        }
        await crash.withLock { $0 }?.value

        // Await the crashed region's lease expiry and the reclaim of its chunk.
        let deadline = ContinuousClock.now + .seconds(20)
        var record = try await Self.record(store)
        while record.chunks[failing] != nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            record = try await Self.record(store)
        }
        finished.store(true, ordering: .releasing)
        await monitor.value

        let spent = outcomes.reduce(0) { $0 + $1.spent }
        let seen = violations.withLock { $0 }
        #expect(seen.isEmpty, "invariant broken: \(seen.prefix(3))")
        #expect(record.chunks[failing] == nil)
        #expect(record.reclaimed.values.contains { $0.region == failing })
        #expect(record.overspend == 0)
        #expect(outcomes.contains { !$0.first.outcome.isGranted })
        try await QuotaWorkload.checkRetries(outcomes, services: services, tenant: Self.tenant)

        var grantable: Int64 = 0
        var fromChunk = 0
        for region in QuotaTestCluster.regions {
            let status = try await services[region]!.status(tenant: Self.tenant)
            #expect(status.overspend == 0)
            grantable += max(0, status.regionView?.chunk?.available ?? 0)
            fromChunk += status.regionView?.counters.servedFromChunk ?? 0
        }
        #expect(spent + grantable <= Self.limit)
        let granted = outcomes.filter { $0.first.outcome.isGranted }.count
        let reclaimed = record.reclaimed.values.reduce(0) { $0 + $1.amount }
        print(
            "quota on etcd: \(outcomes.count) reservations, \(granted) granted, \(spent) of \(Self.limit) tokens spent, \(reclaimed) charged for the crashed region's chunk, \(fromChunk) of \(granted) grants served from a local chunk"
        )

        for region in survivors {
            await services[region]!.stop()
        }
    }

    static func record(_ store: EtcdLinearizableStore) async throws -> QuotaRecord {
        let keyValue = try #require(try await store.get(QuotaRecord.key(of: tenant)))
        return try QuotaRecord.decode(keyValue.value, key: keyValue.key)
    }
}
