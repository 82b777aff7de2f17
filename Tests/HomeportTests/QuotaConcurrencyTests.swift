import Synchronization
import Testing

@testable import Homeport

/// Thousands of concurrent reservations over three regions sharing one
/// embedded store, with one region failing part way: the budget is never
/// overspent and every request id keeps its outcome.
@Suite struct QuotaConcurrencyTests {
    static let tenant = TenantID.test("acme")
    static let limit: Int64 = 20_000

    @Test func threeRegionsOneFailingNeverOverspend() async throws {
        var configuration = QuotaService.Configuration.testing
        configuration.reservationTTL = .seconds(600)
        let cluster = try QuotaTestCluster(configuration: configuration)
        await cluster.step()
        _ = try await cluster["us-east"].setPolicy(QuotaPolicy(limit: Self.limit, periodSeconds: 3600), for: Self.tenant)

        // 3,000 reservations of 1 to 40 tokens: about 61,500 tokens asked of 20,000.
        let workload = QuotaWorkload(tenant: Self.tenant, count: 3000, maximumAmount: 40, seed: 7)
        let failing = "ap-south"
        let survivors = ["us-east", "eu-west"]
        let failed = Atomic<Bool>(false)
        let finished = Atomic<Bool>(false)
        let violations = Mutex<[String]>([])

        // The driver moves time, steps the live regions and checks the
        // invariant in the store after every step.
        let driver = Task {
            while !finished.load(ordering: .acquiring) {
                cluster.clock.advance(by: .milliseconds(50))
                await cluster.step(failed.load(ordering: .acquiring) ? survivors : QuotaTestCluster.regions)
                if let violation = QuotaWorkload.invariantViolation(try? cluster.record(Self.tenant)) {
                    violations.withLock { $0.append(violation) }
                }
                await Task.yield()
            }
        }

        // A fifth of the way in, while budget is left, a region stops: it
        // gets no more requests or steps, and loses the store.
        let outcomes = try await workload.run(services: cluster.services) { index in
            let regions = failed.load(ordering: .acquiring) ? survivors : QuotaTestCluster.regions
            return regions[index % regions.count]
        } completed: { count in
            guard count == 600 else { return }
            cluster.views[failing]!.setReachable(false)
            failed.store(true, ordering: .releasing)
        }
        finished.store(true, ordering: .releasing)
        await driver.value

        // Let the failed region's lease expire and the others reclaim its chunk.
        for _ in 0..<40 where try cluster.record(Self.tenant)?.chunks[failing] != nil {
            await cluster.advance(by: .milliseconds(250), stepping: survivors)
        }

        let spent = outcomes.reduce(0) { $0 + $1.spent }
        let granted = outcomes.filter { $0.first.outcome.isGranted }
        let record = try #require(try cluster.record(Self.tenant))
        let seen = violations.withLock { $0 }
        #expect(seen.isEmpty, "invariant broken: \(seen.prefix(3))")
        #expect(spent <= Self.limit)
        #expect(granted.count > 0)
        #expect(granted.count < outcomes.count, "the workload asks for more than the limit, so some reservations must be denied")
        #expect(record.chunks[failing] == nil)
        #expect(record.reclaimed.values.contains { $0.region == failing })
        #expect(record.overspend == 0)
        try await QuotaWorkload.checkRetries(outcomes, services: cluster.services, tenant: Self.tenant)

        // What clients hold or used, plus what the regions could still grant
        // from their chunks, is all the budget handed out: never above the limit.
        var fromChunk = 0
        var grants = 0
        var grantable: Int64 = 0
        for region in QuotaTestCluster.regions {
            let status = try await cluster[region].status(tenant: Self.tenant)
            #expect(status.overspend == 0)
            #expect(status.storeReachable == (region != failing))
            fromChunk += status.regionView?.counters.servedFromChunk ?? 0
            grants += status.regionView?.counters.granted ?? 0
            grantable += max(0, status.regionView?.chunk?.available ?? 0)
        }
        #expect(grants == granted.count)
        #expect(spent + grantable <= Self.limit)
        let reclaimed = record.reclaimed.values.reduce(0) { $0 + $1.amount }
        print(
            "quota concurrency: \(outcomes.count) reservations, \(granted.count) granted, \(spent) of \(Self.limit) tokens spent, \(reclaimed) charged for the failed region's chunk, \(fromChunk) of \(grants) grants served from a local chunk (\(Int((Double(fromChunk) / Double(max(1, grants)) * 100).rounded()))%)"
        )
    }
}
