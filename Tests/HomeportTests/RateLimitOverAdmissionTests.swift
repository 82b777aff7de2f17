import Testing

@testable import Homeport

/// Bursts split across three regions on simulated time. Every admission
/// checks the documented bound: when region R admits a request, the requests
/// admitted across all regions are at most the limit plus what the other
/// regions admitted that R has not received.
@Suite("Rate-limit over-admission")
struct RateLimitOverAdmissionTests {
    static let tenant = TenantID("acme")!

    /// A three-region cluster whose tenant has `limit` requests per minute,
    /// known at every region, and the counters of the current window.
    struct Burst {
        let cluster: GlobalStateCluster
        let limit: Int64
        let nodesPerRegion: Int
        let window: RateLimitWindow
        /// Admissions whose bound check failed, as "region: total > limit + unheard".
        var violations: [String] = []
        /// The largest unheard count seen at an admission.
        var largestUnheard: Int64 = 0
        private var nextNode: [String: Int] = [:]

        init(limit: Int64, nodesPerRegion: Int) async throws {
            let configuration = GlobalStateConfiguration(rateLimits: .init(countExchangeInterval: .milliseconds(250)))
            cluster = try GlobalStateCluster(nodesPerRegion: nodesPerRegion, configuration: configuration)
            self.limit = limit
            self.nodesPerRegion = nodesPerRegion
            try cluster.node("us-east").rateLimiter.setSetting(
                RateLimitSetting(requestsPerWindow: limit, windowSeconds: 60), for: RateLimitOverAdmissionTests.tenant)
            cluster.schedulePushes(from: "us-east")
            await cluster.run(for: .milliseconds(100))
            window = RateLimitWindow.containing(cluster.now, tenant: RateLimitOverAdmissionTests.tenant, windowSeconds: 60)
        }

        /// Requests admitted in the window, by region, counted from the decisions.
        var admittedByRegion: [String: Int64] = [:]

        var totalAdmitted: Int64 { admittedByRegion.values.reduce(0, +) }

        var overAdmission: Int64 { max(0, totalAdmitted - limit) }

        /// Returns what the other regions admitted that node `index` of `region` has not heard of.
        func unheard(by region: String, node index: Int = 0) -> Int64 {
            let known = cluster.node(region, index).rateLimiter.counters.counts(of: window)
            return cluster.peers(of: region).reduce(0) { sum, peer in
                sum + admittedByRegion[peer, default: 0] - (known[peer] ?? 0)
            }
        }

        /// Sends one request to the next node of `region` and checks the bound if it is admitted.
        mutating func request(at region: String) {
            let index = nextNode[region, default: 0]
            nextNode[region] = (index + 1) % nodesPerRegion
            let decision = cluster.node(region, index).rateLimiter.check(RateLimitOverAdmissionTests.tenant)
            guard decision.admitted else { return }

            admittedByRegion[region, default: 0] += 1
            let unheard = unheard(by: region, node: index)
            largestUnheard = max(largestUnheard, unheard)
            if totalAdmitted > limit + unheard {
                violations.append("\(region): \(totalAdmitted) > \(limit) + \(unheard)")
            }
        }
    }

    /// Ten requests per region, a count exchange, then a burst of 100 per
    /// region with no exchange during it.
    func burstWithoutExchange(nodesPerRegion: Int) async throws -> Burst {
        var burst = try await Burst(limit: 90, nodesPerRegion: nodesPerRegion)
        for _ in 0..<10 {
            for region in burst.cluster.regions { burst.request(at: region) }
        }
        await burst.cluster.exchangeCountsOnce()
        for _ in 0..<100 {
            for region in burst.cluster.regions { burst.request(at: region) }
        }
        return burst
    }

    @Test("burst over-admits by unheard counts", arguments: [1, 3])
    func burst(nodesPerRegion: Int) async throws {
        let burst = try await burstWithoutExchange(nodesPerRegion: nodesPerRegion)

        // Each region heard of 20 requests elsewhere, so it admits 60 more
        // alone: 210 in all, 120 over the limit, which is exactly what each
        // region's two peers counted since the exchange.
        #expect(burst.violations == [])
        #expect(burst.totalAdmitted == 210)
        #expect(burst.overAdmission == 120)
        for region in burst.cluster.regions {
            #expect(burst.unheard(by: region) == 120, "unheard at \(region)")
        }
        print(
            "burst of 330 requests at 3 regions, \(nodesPerRegion) node(s) each, limit 90: admitted \(burst.totalAdmitted), over-admission \(burst.overAdmission)"
        )
    }

    @Test("more nodes per region, same over-admission")
    func nodesDoNotRaiseBound() async throws {
        let single = try await burstWithoutExchange(nodesPerRegion: 1)
        let several = try await burstWithoutExchange(nodesPerRegion: 4)

        #expect(several.overAdmission == single.overAdmission)
        #expect(several.totalAdmitted == single.totalAdmitted)
        #expect(several.violations == [])
    }

    /// Sends each region one request every 2 ms for 3 simulated seconds
    /// while the count-exchange loop runs every 250 ms.
    func pacedTraffic(nodesPerRegion: Int) async throws -> Burst {
        var burst = try await Burst(limit: 1_500, nodesPerRegion: nodesPerRegion)
        burst.cluster.scheduleCountExchanges()
        for _ in 0..<1_500 {
            await burst.cluster.run(for: .milliseconds(2))
            for region in burst.cluster.regions { burst.request(at: region) }
        }
        return burst
    }

    @Test("paced traffic stays within the bound", arguments: [1, 3])
    func paced(nodesPerRegion: Int) async throws {
        let burst = try await pacedTraffic(nodesPerRegion: nodesPerRegion)

        #expect(burst.violations == [])
        #expect(burst.totalAdmitted > burst.limit)
        #expect(burst.overAdmission <= burst.largestUnheard)
        print(
            "paced 4500 requests at 3 regions, \(nodesPerRegion) node(s) each, limit 1500, exchange every 250 ms: admitted \(burst.totalAdmitted), over-admission \(burst.overAdmission), largest unheard at an admission \(burst.largestUnheard)"
        )
    }

    @Test("paced traffic: nodes do not change the result")
    func pacedNodes() async throws {
        let single = try await pacedTraffic(nodesPerRegion: 1)
        let several = try await pacedTraffic(nodesPerRegion: 3)

        #expect(several.overAdmission == single.overAdmission)
    }
}
