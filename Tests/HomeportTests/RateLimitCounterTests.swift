import Testing

@testable import Homeport

@Suite("Rate-limit counters")
struct RateLimitCounterTests {
    static let tenant = TenantID("acme")!
    static let start: Int64 = 1_800_000_000_000

    func window(_ start: Int64 = start, seconds: Int64 = 60) -> RateLimitWindow {
        RateLimitWindow(tenant: Self.tenant, windowSeconds: seconds, startMilliseconds: start)
    }

    @Test("windows align to the epoch")
    func alignment() {
        let inside = RateLimitWindow.containing(Self.start + 59_999, tenant: Self.tenant, windowSeconds: 60)
        let next = RateLimitWindow.containing(Self.start + 60_000, tenant: Self.tenant, windowSeconds: 60)
        let odd = RateLimitWindow.containing(7_000, tenant: Self.tenant, windowSeconds: 7)

        #expect(inside == window())
        #expect(inside.endMilliseconds == Self.start + 60_000)
        #expect(next.startMilliseconds == Self.start + 60_000)
        #expect(odd.startMilliseconds == 7_000)
        #expect(RateLimitWindow.containing(6_999, tenant: Self.tenant, windowSeconds: 7).startMilliseconds == 0)
    }

    @Test("admission counts up to the limit")
    func admission() {
        let counters = RegionRateLimitCounters(region: "us-east")

        let results = (0..<4).map { _ in counters.admit(window(), limit: 3) }

        #expect(results.map(\.admitted) == [true, true, true, false])
        #expect(results.map(\.total) == [1, 2, 3, 3])
        #expect(counters.counts(of: window()) == ["us-east": 3])
    }

    @Test("received counts reduce local room")
    func remoteCountsCount() {
        let counters = RegionRateLimitCounters(region: "us-east")
        counters.merge([RateLimitWindowCounts(window: window(), counts: ["us-west": 4, "eu-west": 5])], nowMilliseconds: Self.start)

        let first = counters.admit(window(), limit: 10)
        let second = counters.admit(window(), limit: 10)

        #expect(first == .init(admitted: true, total: 10))
        #expect(second == .init(admitted: false, total: 10))
    }

    @Test("merge takes the maximum per region")
    func mergeByMaximum() {
        let counters = RegionRateLimitCounters(region: "us-east")
        _ = counters.admit(window(), limit: 100)
        _ = counters.admit(window(), limit: 100)

        let raised = counters.merge(
            [RateLimitWindowCounts(window: window(), counts: ["us-east": 1, "us-west": 7])], nowMilliseconds: Self.start)
        let repeated = counters.merge(
            [RateLimitWindowCounts(window: window(), counts: ["us-east": 1, "us-west": 7])], nowMilliseconds: Self.start)
        let lower = counters.merge([RateLimitWindowCounts(window: window(), counts: ["us-west": 3])], nowMilliseconds: Self.start)

        #expect(raised.raised == 1)
        #expect(repeated.raised == 0)
        #expect(lower.raised == 0)
        #expect(counters.counts(of: window()) == ["us-east": 2, "us-west": 7])
    }

    @Test("ended windows are dropped")
    func garbageCollection() {
        let counters = RegionRateLimitCounters(region: "us-east")
        _ = counters.admit(window(), limit: 10)
        _ = counters.admit(window(Self.start + 60_000), limit: 10)

        // A late message about an ended window changes nothing.
        counters.merge([RateLimitWindowCounts(window: window(Self.start - 60_000), counts: ["us-west": 1])], nowMilliseconds: Self.start)
        #expect(counters.windowCount == 2)

        #expect(counters.removeEndedWindows(nowMilliseconds: Self.start + 60_000) == 1)
        #expect(counters.liveCounts(nowMilliseconds: Self.start + 60_000).map(\.window) == [window(Self.start + 60_000)])
        #expect(counters.removeEndedWindows(nowMilliseconds: Self.start + 120_000) == 1)
        #expect(counters.windowCount == 0)
    }

    @Test("full counters drop new received windows")
    func windowBound() {
        let counters = RegionRateLimitCounters(region: "us-east", maximumWindows: 2)
        let received = (0..<3).map { index in
            RateLimitWindowCounts(
                window: RateLimitWindow(tenant: TenantID("t\(index)")!, windowSeconds: 60, startMilliseconds: Self.start),
                counts: ["us-west": 1])
        }

        let result = counters.merge(received, nowMilliseconds: Self.start)

        #expect(result.dropped == 1)
        #expect(counters.windowCount == 2)
        // Known windows still merge, and local admissions still count.
        #expect(
            counters.merge([RateLimitWindowCounts(window: received[0].window, counts: ["us-west": 5])], nowMilliseconds: Self.start).raised
                == 1)
        #expect(counters.admit(window(), limit: 1).admitted)
    }
}

@Suite("Rate limiter")
struct RateLimiterTests {
    static let tenant = TenantID("acme")!

    @Test("tenant without a setting is not limited")
    func unlimited() throws {
        let cluster = try GlobalStateCluster()

        let decision = cluster.node("us-east").rateLimiter.check(Self.tenant)

        #expect(decision.admitted)
        #expect(decision.setting == nil)
        #expect(decision.count == nil)
        #expect(cluster.counters("us-east").windowCount == 0)
    }

    @Test("rejection carries retry-after to window end")
    func retryAfter() async throws {
        let cluster = try GlobalStateCluster()
        let limiter = cluster.node("us-east").rateLimiter
        try limiter.setSetting(RateLimitSetting(requestsPerWindow: 1, windowSeconds: 60), for: Self.tenant)
        await cluster.run(for: .milliseconds(20_500))

        let first = limiter.check(Self.tenant)
        let second = limiter.check(Self.tenant)

        #expect(first.admitted)
        #expect(first.retryAfterSeconds == nil)
        #expect(!second.admitted)
        #expect(second.count == 1)
        // 39.5 s are left in the window; whole seconds round up.
        #expect(second.retryAfterSeconds == 40)
    }

    @Test("setting written at one region limits all")
    func settingReplicates() async throws {
        let cluster = try GlobalStateCluster()
        try cluster.node("eu-west").rateLimiter.setSetting(RateLimitSetting(requestsPerWindow: 5, windowSeconds: 10), for: Self.tenant)
        cluster.schedulePushes(from: "eu-west")
        await cluster.run(for: .milliseconds(100))

        for region in cluster.regions {
            #expect(cluster.node(region).rateLimiter.setting(for: Self.tenant) == RateLimitSetting(requestsPerWindow: 5, windowSeconds: 10))
        }
    }

    @Test("invalid stored setting leaves tenant unlimited")
    func invalidSetting() throws {
        let cluster = try GlobalStateCluster()
        let registers = cluster.registers("us-east")
        let stamp = registerStamp(cluster.now, 0, "us-west")
        registers.apply(
            [GlobalRegisterEntry(name: "rate-limit:acme", value: .object(["requestsPerWindow": .string("ten")]), stamp: stamp)],
            from: "us-west", path: .push)

        let decision = cluster.node("us-east").rateLimiter.check(Self.tenant)

        #expect(decision.admitted)
        #expect(decision.setting == nil)
    }

    @Test("counts exchange and old windows go")
    func exchangeAndCollect() async throws {
        let cluster = try GlobalStateCluster()
        try cluster.node("us-east").rateLimiter.setSetting(RateLimitSetting(requestsPerWindow: 100, windowSeconds: 1), for: Self.tenant)
        cluster.schedulePushes(from: "us-east")
        await cluster.run(for: .milliseconds(100))
        for region in cluster.regions {
            for _ in 0..<3 { _ = cluster.node(region).rateLimiter.check(Self.tenant) }
        }
        let window = RateLimitWindow.containing(cluster.now, tenant: Self.tenant, windowSeconds: 1)

        await cluster.exchangeCountsOnce()

        for region in cluster.regions {
            #expect(cluster.counters(region).counts(of: window) == ["us-east": 3, "us-west": 3, "eu-west": 3], "counts at \(region)")
        }

        // The next exchanges after the window ended remove it everywhere.
        await cluster.run(for: .seconds(1))
        await cluster.exchangeCountsOnce()
        for region in cluster.regions {
            #expect(cluster.counters(region).windowCount == 0, "windows at \(region)")
        }
    }

    @Test("failed exchange is caught up by the next")
    func exchangeAfterPartition() async throws {
        let cluster = try GlobalStateCluster()
        try cluster.node("us-east").rateLimiter.setSetting(RateLimitSetting(requestsPerWindow: 100, windowSeconds: 60), for: Self.tenant)
        cluster.schedulePushes(from: "us-east")
        await cluster.run(for: .milliseconds(100))
        let window = RateLimitWindow.containing(cluster.now, tenant: Self.tenant, windowSeconds: 60)
        cluster.network.cut("us-east", "us-west")
        cluster.network.cut("us-west", "eu-west")
        for _ in 0..<4 { _ = cluster.node("us-west").rateLimiter.check(Self.tenant) }

        await cluster.exchangeCountsOnce()
        #expect(cluster.counters("us-east").counts(of: window)["us-west"] == nil)
        #expect(
            cluster.metrics.value(
                "homeport_rate_limit_exchanges_total", labels: ["region": "us-west", "peer": "us-east", "outcome": "failed"]) == 1)

        cluster.network.heal("us-east", "us-west")
        await cluster.exchangeCountsOnce()
        #expect(cluster.counters("us-east").counts(of: window)["us-west"] == 4)
        // eu-west hears of us-west's count through us-east.
        await cluster.exchangeCountsOnce()
        #expect(cluster.counters("eu-west").counts(of: window)["us-west"] == 4)
    }
}
