import Synchronization
import Testing

@testable import Homeport

/// Quota scenarios on the embedded store and a manual clock, written as
/// scripts: set a policy, reserve, cut a region off, move time, and check
/// the record in the store and the outcomes.
@Suite(.timeLimit(.minutes(1))) struct QuotaServiceTests {
    static let tenant = TenantID.test("acme")

    /// The test settings with background refills off, so every refill
    /// happens inside a reserve call and chunk sizes are deterministic, and
    /// with a 1 s horizon, so a chunk covers one second of demand.
    static var deterministic: QuotaService.Configuration {
        var configuration = QuotaService.Configuration.testing
        configuration.sizing.refillFraction = 0
        configuration.sizing.horizon = .seconds(1)
        return configuration
    }

    static func makeCluster(
        limit: Int64 = 1000, policy: QuotaPolicy? = nil, configuration: QuotaService.Configuration = deterministic,
        regions: [String] = QuotaTestCluster.regions
    ) async throws -> QuotaTestCluster {
        let cluster = try QuotaTestCluster(regions: regions, configuration: configuration)
        await cluster.step()
        _ = try await cluster[regions[0]].setPolicy(policy ?? QuotaPolicy(limit: limit, periodSeconds: 3600), for: tenant)
        return cluster
    }

    // MARK: Chunks

    @Test func firstReserveRefillsThenChunkServes() async throws {
        let cluster = try await Self.makeCluster(regions: ["us-east"])
        let region = cluster["us-east"]

        let first = try await region.reserve(tenant: Self.tenant, requestID: .test("a"), amount: 10)
        let second = try await region.reserve(tenant: Self.tenant, requestID: .test("b"), amount: 10)

        #expect(first.outcome == .granted(source: .store, expiresAtMilliseconds: cluster.clock.nowMilliseconds() + 60_000))
        #expect(second.outcome == .granted(source: .chunk, expiresAtMilliseconds: cluster.clock.nowMilliseconds() + 60_000))
        let record = try #require(try cluster.record(Self.tenant))
        // No demand is known before the first round trip, so the chunk is the minimum.
        #expect(record.chunks["us-east"]?.size == 100)
        #expect(record.consumed == 0)
        #expect(cluster.metrics["us-east"]!.value("homeport_quota_chunk_hits_total", labels: ["region": "us-east"]) == 1)
        #expect(cluster.metrics["us-east"]!.value("homeport_quota_chunk_misses_total", labels: ["region": "us-east"]) == 1)
    }

    @Test func chunkCappedAtShareOfFreeBudget() async throws {
        let cluster = try await Self.makeCluster(limit: 10_000, regions: ["us-east", "eu-west"])
        let east = cluster["us-east"]

        // A first chunk of 100, spent by ten reservations in the same second.
        for index in 0..<10 {
            _ = try await east.reserve(tenant: Self.tenant, requestID: .test("warm-\(index)"), amount: 10)
        }
        // 3,100 tokens per second of demand calls for a 3,100-token chunk, but
        // the cap is the larger of the request (3,000) and a quarter of the
        // 9,900 free tokens (2,475).
        let big = try await east.reserve(tenant: Self.tenant, requestID: .test("big"), amount: 3000)
        #expect(big.outcome.isGranted)
        #expect(try cluster.record(Self.tenant)?.chunks["us-east"]?.size == 3100)

        // A quiet region gets the minimum chunk.
        _ = try await cluster["eu-west"].reserve(tenant: Self.tenant, requestID: .test("quiet"), amount: 10)
        #expect(try cluster.record(Self.tenant)?.chunks["eu-west"]?.size == 100)

        // The busy region's next chunk is a quarter of the 6,800 free tokens: 3,100 + 1,700.
        _ = try await east.reserve(tenant: Self.tenant, requestID: .test("more"), amount: 500)
        let record = try #require(try cluster.record(Self.tenant))
        #expect(record.chunks["us-east"]?.size == 4800)
        #expect(record.overspend == 0)
    }

    @Test func chunkSizingRules() {
        var sizing = ChunkSizing()
        sizing.minimumChunkTokens = 100
        sizing.horizon = .seconds(5)
        sizing.maximumShare = 0.25

        // Demand of 1,000 tokens/s wants 5,000; a quarter of 10,000 caps it.
        #expect(sizing.extra(need: 0, available: 0, rate: 1000, free: 10_000) == 2500)
        // Low demand gets the minimum.
        #expect(sizing.extra(need: 0, available: 0, rate: 10, free: 10_000) == 100)
        // A request larger than the cap still gets what it needs.
        #expect(sizing.extra(need: 3000, available: 0, rate: 0, free: 10_000) == 3000)
        // Free tokens already in the chunk count toward the target.
        #expect(sizing.extra(need: 0, available: 80, rate: 10, free: 10_000) == 20)
        // Too little budget for the request: take nothing.
        #expect(sizing.extra(need: 50, available: 0, rate: 0, free: 40) == 0)
        // The last free tokens can be taken whole.
        #expect(sizing.extra(need: 30, available: 0, rate: 0, free: 60) == 60)
    }

    @Test func limitReachedIsDeniedWithNumbers() async throws {
        let cluster = try await Self.makeCluster(limit: 250, regions: ["us-east", "eu-west"])

        var granted: Int64 = 0
        var denial: ReservationOutcome?
        for index in 0..<30 {
            let region = cluster[index % 2 == 0 ? "us-east" : "eu-west"]
            let result = try await region.reserve(tenant: Self.tenant, requestID: .test("r\(index)"), amount: 20)
            if result.outcome.isGranted {
                granted += 20
            } else if denial == nil {
                denial = result.outcome
            }
        }

        #expect(granted <= 250)
        guard case .denied(let reason, let detail)? = denial else {
            Issue.record("no reservation was denied")
            return
        }
        #expect(reason == .limitReached)
        #expect(detail.contains("limit of 250 tokens"))
        let record = try #require(try cluster.record(Self.tenant))
        #expect(record.consumed + record.outstanding <= 250)
    }

    @Test func amountOverLimitIsDenied() async throws {
        let cluster = try await Self.makeCluster(regions: ["us-east"])
        _ = try await cluster["us-east"].reserve(tenant: Self.tenant, requestID: .test("first"), amount: 1)

        let result = try await cluster["us-east"].reserve(tenant: Self.tenant, requestID: .test("huge"), amount: 1001)

        guard case .denied(let reason, _) = result.outcome else {
            Issue.record("amount over the limit was granted")
            return
        }
        #expect(reason == .amountExceedsLimit)
    }

    @Test func hugeAmountsDoNotOverflowDemand() async throws {
        let cluster = try await Self.makeCluster(limit: QuotaPolicy.maximumTokens - 1, regions: ["us-east"])
        let region = cluster["us-east"]

        // 10,000 requests of 10^15 tokens add up to more than Int64 can hold.
        var denied = 0
        for index in 0..<10_000 {
            let result = try await region.reserve(tenant: Self.tenant, requestID: .test("huge-\(index)"), amount: QuotaPolicy.maximumTokens)
            if !result.outcome.isGranted { denied += 1 }
        }
        let small = try await region.reserve(tenant: Self.tenant, requestID: .test("small"), amount: 10)

        #expect(denied == 10_000)
        #expect(small.outcome.isGranted)
        #expect(try cluster.record(Self.tenant)?.overspend == 0)
    }

    // MARK: Idempotency

    @Test func repeatReturnsFirstOutcome() async throws {
        let cluster = try await Self.makeCluster(regions: ["us-east"])
        let region = cluster["us-east"]

        let first = try await region.reserve(tenant: Self.tenant, requestID: .test("same"), amount: 10)
        cluster.clock.advance(by: .seconds(2))
        let again = try await region.reserve(tenant: Self.tenant, requestID: .test("same"), amount: 10)

        #expect(again.outcome == first.outcome)
        #expect(!first.replayed)
        #expect(again.replayed)
        let reused = await #expect(throws: QuotaError.self) {
            try await region.reserve(tenant: Self.tenant, requestID: .test("same"), amount: 11)
        }
        #expect(reused?.code == .requestIDReused)
        #expect(reused?.detail.contains("10") == true)
        #expect(reused?.detail.contains("11") == true)
    }

    @Test func concurrentDuplicatesShareOneOutcome() async throws {
        let cluster = try await Self.makeCluster(regions: ["us-east"])
        let region = cluster["us-east"]

        let results = try await withThrowingTaskGroup(of: ReserveResult.self) { group in
            for _ in 0..<20 {
                group.addTask { try await region.reserve(tenant: Self.tenant, requestID: .test("dup"), amount: 10) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }

        #expect(Set(results.map { "\($0.outcome)" }).count == 1)
        #expect(results.filter { !$0.replayed }.count == 1)
        let status = try await region.status(tenant: Self.tenant)
        #expect(status.regionView?.counters.granted == 1)
    }

    @Test func deniedOutcomeIsStoredToo() async throws {
        let cluster = try await Self.makeCluster(regions: ["us-east"])
        let region = cluster["us-east"]
        _ = try await region.reserve(tenant: Self.tenant, requestID: .test("first"), amount: 100)
        cluster.views["us-east"]!.setReachable(false)

        let denied = try await region.reserve(tenant: Self.tenant, requestID: .test("cut"), amount: 10)
        cluster.views["us-east"]!.setReachable(true)
        let again = try await region.reserve(tenant: Self.tenant, requestID: .test("cut"), amount: 10)

        guard case .denied(let reason, let detail) = denied.outcome else {
            Issue.record("a reservation was granted while the store was cut off and the chunk was spent")
            return
        }
        #expect(reason == .storeUnavailable)
        #expect(detail.contains("fails closed"))
        #expect(again.outcome == denied.outcome)
        #expect(again.replayed)
    }

    // MARK: Commit, release, expiry

    @Test func commitReturnsUnusedAndReportsUsage() async throws {
        let cluster = try await Self.makeCluster(regions: ["us-east"])
        let region = cluster["us-east"]
        _ = try await region.reserve(tenant: Self.tenant, requestID: .test("job"), amount: 40)

        let committed = try region.commit(tenant: Self.tenant, requestID: .test("job"), used: 25)
        let again = try region.commit(tenant: Self.tenant, requestID: .test("job"), used: 25)
        await cluster.advance(by: .seconds(1))

        #expect(committed.returned == 15)
        #expect(committed.reservation.state == .committed(used: 25))
        #expect(again.replayed)
        #expect(again.returned == 15)
        let record = try #require(try cluster.record(Self.tenant))
        #expect(record.consumed == 25)
        #expect(record.consumed + record.outstanding <= 1000)
    }

    @Test func commitErrorsNameTheValue() async throws {
        let cluster = try await Self.makeCluster(regions: ["us-east"])
        let region = cluster["us-east"]
        _ = try await region.reserve(tenant: Self.tenant, requestID: .test("job"), amount: 40)

        let over = #expect(throws: QuotaError.self) { try region.commit(tenant: Self.tenant, requestID: .test("job"), used: 41) }
        #expect(over?.code == .usedExceedsReserved)
        #expect(over?.field == "used")
        #expect(over?.detail.contains("41") == true)

        _ = try region.commit(tenant: Self.tenant, requestID: .test("job"), used: 30)
        let changed = #expect(throws: QuotaError.self) { try region.commit(tenant: Self.tenant, requestID: .test("job"), used: 31) }
        #expect(changed?.code == .requestIDReused)
        let released = #expect(throws: QuotaError.self) { try region.release(tenant: Self.tenant, requestID: .test("job")) }
        #expect(released?.code == .reservationNotHeld)
        let unknown = #expect(throws: QuotaError.self) { try region.commit(tenant: Self.tenant, requestID: .test("nope"), used: 1) }
        #expect(unknown?.code == .reservationNotFound)
    }

    @Test func releaseReturnsEverything() async throws {
        let cluster = try await Self.makeCluster(regions: ["us-east"])
        let region = cluster["us-east"]
        _ = try await region.reserve(tenant: Self.tenant, requestID: .test("job"), amount: 40)

        let released = try region.release(tenant: Self.tenant, requestID: .test("job"))
        let again = try region.release(tenant: Self.tenant, requestID: .test("job"))

        #expect(released.returned == 40)
        #expect(again.replayed)
        let commit = #expect(throws: QuotaError.self) { try region.commit(tenant: Self.tenant, requestID: .test("job"), used: 1) }
        #expect(commit?.code == .reservationNotHeld)
        let status = try await region.status(tenant: Self.tenant)
        #expect(status.regionView?.chunk?.available == 100)
    }

    @Test func heldReservationExpiresAfterTTL() async throws {
        let cluster = try await Self.makeCluster(regions: ["us-east"])
        let region = cluster["us-east"]
        _ = try await region.reserve(tenant: Self.tenant, requestID: .test("idle"), amount: 40)

        await cluster.advance(by: .seconds(59))
        #expect(try region.reservation(tenant: Self.tenant, requestID: .test("idle")).state == .held)
        await cluster.advance(by: .seconds(1))

        #expect(try region.reservation(tenant: Self.tenant, requestID: .test("idle")).state == .expired)
        let commit = #expect(throws: QuotaError.self) { try region.commit(tenant: Self.tenant, requestID: .test("idle"), used: 1) }
        #expect(commit?.code == .reservationNotHeld)
        #expect(commit?.detail.contains("expired") == true)
        #expect(try region.release(tenant: Self.tenant, requestID: .test("idle")).reservation.state == .expired)
        // Settles topped the chunk up meanwhile; every token of it is free again.
        let chunk = try #require(try await region.status(tenant: Self.tenant).regionView?.chunk)
        #expect(chunk.reserved == 0)
        #expect(chunk.available == chunk.size)
        #expect(try await region.status(tenant: Self.tenant).regionView?.counters.expired == 1)
    }

    @Test func periodRolloverResetsConsumption() async throws {
        let cluster = try await Self.makeCluster(policy: QuotaPolicy(limit: 1000, periodSeconds: 60), regions: ["us-east"])
        let region = cluster["us-east"]
        _ = try await region.reserve(tenant: Self.tenant, requestID: .test("job"), amount: 40)
        _ = try region.commit(tenant: Self.tenant, requestID: .test("job"), used: 40)
        await cluster.advance(by: .seconds(1))
        let before = try #require(try cluster.record(Self.tenant))
        #expect(before.consumed == 40)

        await cluster.advance(by: .seconds(60))

        let after = try #require(try cluster.record(Self.tenant))
        #expect(after.period == before.period + 1)
        #expect(after.consumed == 0)
    }

    // MARK: Policy

    @Test func limitBelowUsageIsRejected() async throws {
        let cluster = try await Self.makeCluster(regions: ["us-east"])
        _ = try await cluster["us-east"].reserve(tenant: Self.tenant, requestID: .test("job"), amount: 40)

        let error = await #expect(throws: QuotaError.self) {
            try await cluster["us-east"].setPolicy(QuotaPolicy(limit: 50, periodSeconds: 3600), for: Self.tenant)
        }

        #expect(error?.code == .limitBelowUsage)
        #expect(error?.detail.contains("100 held in chunks") == true)
        #expect(try cluster.record(Self.tenant)?.policy.limit == 1000)
    }

    @Test func reserveWithoutPolicyIsNotFound() async throws {
        let cluster = try QuotaTestCluster(regions: ["us-east"], configuration: Self.deterministic)
        await cluster.step()

        let error = await #expect(throws: QuotaError.self) {
            try await cluster["us-east"].reserve(tenant: .test("nobody"), requestID: .test("a"), amount: 1)
        }

        #expect(error?.code == .quotaNotFound)
    }

    @Test func corruptRecordBreakingInvariantIsRejected() throws {
        var record = QuotaRecord(policy: QuotaPolicy(limit: 100, periodSeconds: 60), period: 1)
        record.consumed = 60
        record.chunks["us-east"] = QuotaRecord.Chunk(chunk: 1, lease: LeaseID(rawValue: 1), size: 41, sequence: 1)

        let error = #expect(throws: QuotaError.self) {
            try QuotaRecord.decode(record.json.serializedBytes(), key: "k")
        }

        #expect(error?.code == .corruptRecord)
        #expect(error?.detail.contains("exceeds the limit 100") == true)
    }

    // MARK: Failures

    /// A region cut off from the store stops granting from its chunk once
    /// its lease may have expired. The others reclaim the chunk when the
    /// store expires the lease, and the region credits what it never granted
    /// when it comes back.
    @Test func failedRegionChunkReclaimedThenCredited() async throws {
        let cluster = try await Self.makeCluster()
        let failing = cluster["ap-south"]
        _ = try await failing.reserve(tenant: Self.tenant, requestID: .test("c1"), amount: 10)
        _ = try await cluster["us-east"].reserve(tenant: Self.tenant, requestID: .test("a1"), amount: 10)
        let chunkID = try #require(try cluster.record(Self.tenant)?.chunks["ap-south"]?.chunk)

        // Cut the region off and let its lease run out while the others keep theirs.
        cluster.views["ap-south"]!.setReachable(false)
        await cluster.advance(by: .seconds(4), stepping: ["us-east", "eu-west"])
        let fenced = try await failing.reserve(tenant: Self.tenant, requestID: .test("c2"), amount: 10)
        await cluster.advance(by: .seconds(3), stepping: ["us-east", "eu-west"])

        guard case .denied(let reason, _) = fenced.outcome else {
            Issue.record("a region without a valid lease granted from its chunk")
            return
        }
        #expect(reason == .storeUnavailable)
        let reclaimed = try #require(try cluster.record(Self.tenant))
        #expect(reclaimed.chunks["ap-south"] == nil)
        #expect(reclaimed.reclaimed[chunkID]?.amount == 100)
        #expect(reclaimed.consumed == 100)
        #expect(reclaimed.overspend == 0)

        // Back again: the 90 tokens it never granted are credited.
        cluster.views["ap-south"]!.setReachable(true)
        await cluster.step(["ap-south"])
        let credited = try #require(try cluster.record(Self.tenant))
        #expect(credited.reclaimed.isEmpty)
        #expect(credited.consumed == 10)
        #expect(credited.chunks["ap-south"]?.chunk != chunkID)
        #expect(credited.overspend == 0)
        let status = try await failing.status(tenant: Self.tenant)
        #expect(status.regionView?.counters.creditedTokens == 90)

        // Its old reservation can still be committed; the store charged it already.
        #expect(try failing.commit(tenant: Self.tenant, requestID: .test("c1"), used: 4).returned == 6)
    }

    /// A region restarted with an empty memory cannot account for its old
    /// chunk, so its first write charges that chunk in full.
    @Test func restartedRegionChargesUnknownChunk() async throws {
        let cluster = try await Self.makeCluster(regions: ["us-east"])
        _ = try await cluster["us-east"].reserve(tenant: Self.tenant, requestID: .test("before"), amount: 10)
        let old = try #require(try cluster.record(Self.tenant)?.chunks["us-east"])
        let logger = Logger(label: "quota-test", sink: .discarding, clock: cluster.clock)
        let restarted = try QuotaService(
            region: "us-east", store: cluster.views["us-east"]!, clock: cluster.clock, configuration: Self.deterministic, logger: logger)

        let result = try await restarted.reserve(tenant: Self.tenant, requestID: .test("after"), amount: 10)

        #expect(result.outcome.isGranted)
        let record = try #require(try cluster.record(Self.tenant))
        #expect(record.consumed == old.size)
        #expect(record.chunks["us-east"]?.chunk != old.chunk)
        #expect(record.overspend == 0)
    }

    @Test func failOpenAdmitsUpToBound() async throws {
        let policy = QuotaPolicy(limit: 1000, periodSeconds: 3600, failMode: .open, failOpenBound: 50)
        let cluster = try await Self.makeCluster(policy: policy, regions: ["us-east"])
        let region = cluster["us-east"]
        _ = try await region.reserve(tenant: Self.tenant, requestID: .test("chunk"), amount: 100)
        cluster.views["us-east"]!.setReachable(false)

        let first = try await region.reserve(tenant: Self.tenant, requestID: .test("open-1"), amount: 30)
        let over = try await region.reserve(tenant: Self.tenant, requestID: .test("open-2"), amount: 30)
        let fits = try await region.reserve(tenant: Self.tenant, requestID: .test("open-3"), amount: 20)

        #expect(first.outcome == .granted(source: .failOpen, expiresAtMilliseconds: cluster.clock.nowMilliseconds() + 60_000))
        guard case .denied(let reason, let detail) = over.outcome else {
            Issue.record("fail-open admitted beyond its bound")
            return
        }
        #expect(reason == .failOpenBoundReached)
        #expect(detail.contains("50 tokens"))
        #expect(fits.outcome.isGranted)
        let cut = try await region.status(tenant: Self.tenant)
        #expect(!cut.storeReachable)
        #expect(cut.regionView?.failOpenAdmittedThisPeriod == 50)

        // Usage of fail-open reservations is reported once the store is back.
        _ = try region.commit(tenant: Self.tenant, requestID: .test("open-1"), used: 30)
        cluster.views["us-east"]!.setReachable(true)
        await cluster.advance(by: .seconds(1))
        let record = try #require(try cluster.record(Self.tenant))
        #expect(record.failOpenUsed == 30)
        #expect(record.failOpenOverLimit == 0)
        #expect(record.consumed == 30)
        #expect(record.overspend == 0)
    }

    @Test func stopReturnsFreeTokens() async throws {
        let cluster = try await Self.makeCluster(regions: ["us-east", "eu-west"])
        _ = try await cluster["eu-west"].reserve(tenant: Self.tenant, requestID: .test("west"), amount: 10)
        _ = try await cluster["us-east"].reserve(tenant: Self.tenant, requestID: .test("held"), amount: 10)
        _ = try await cluster["us-east"].reserve(tenant: Self.tenant, requestID: .test("done"), amount: 20)
        _ = try cluster["us-east"].commit(tenant: Self.tenant, requestID: .test("done"), used: 5)

        await cluster["us-east"].stop()

        let record = try #require(try cluster.record(Self.tenant))
        // The held 10 stay in the chunk; the used 5 are reported; the rest returned.
        #expect(record.chunks["us-east"]?.size == 10)
        #expect(record.consumed == 5)
        #expect(try cluster.store.get(QuotaLeaseHolder.key(of: "us-east")) == nil)

        // With the lease revoked, the next settle elsewhere reclaims the held part.
        await cluster.advance(by: .seconds(1), stepping: ["eu-west"])
        let after = try #require(try cluster.record(Self.tenant))
        #expect(after.chunks["us-east"] == nil)
        #expect(after.consumed == 15)
    }

    /// A reservation the chunk can cover completes while another request's
    /// refill is stuck in the store.
    @Test func chunkServesWhileStoreStalls() async throws {
        let clock = ManualClock()
        let stalling = StallingStore(EmbeddedLinearizableStore(clock: clock))
        let logger = Logger(label: "quota-test", sink: .discarding, clock: clock)
        let region = try QuotaService(region: "us-east", store: stalling, clock: clock, configuration: Self.deterministic, logger: logger)
        await region.step()
        _ = try await region.setPolicy(QuotaPolicy(limit: 1000, periodSeconds: 3600), for: Self.tenant)
        _ = try await region.reserve(tenant: Self.tenant, requestID: .test("first"), amount: 60)
        let chunk = try #require(try await region.status(tenant: Self.tenant).regionView?.chunk)
        try #require(chunk.available == 40)

        stalling.stall()
        let refill = Task { try await region.reserve(tenant: Self.tenant, requestID: .test("big"), amount: 80) }
        await stalling.waitUntilStalled()
        let done = SharedFlag()
        let small = Task {
            defer { done.set() }
            return try await region.reserve(tenant: Self.tenant, requestID: .test("small"), amount: 30)
        }
        // Give the local reservation many turns; a version that waited on the
        // store would still be waiting, and gets unblocked only afterwards.
        for _ in 0..<100_000 where !done.isSet {
            await Task.yield()
        }
        let finishedWhileStalled = done.isSet
        stalling.resume()
        let local = try await small.value
        let big = try await refill.value

        #expect(finishedWhileStalled)

        guard case .granted(.chunk, _) = local.outcome else {
            Issue.record("the local reservation got \(local.outcome) instead of a grant from the chunk")
            return
        }
        guard case .granted(.store, _) = big.outcome else {
            Issue.record("the refilling reservation got \(big.outcome)")
            return
        }
    }

    /// A write the store applied but whose response was lost is resolved from
    /// a fresh read, so the usage it reported is counted once.
    @Test(arguments: [true, false]) func writeInDoubtCountsUsageOnce(applied: Bool) async throws {
        let clock = ManualClock()
        let base = EmbeddedLinearizableStore(clock: clock)
        let flaky = LosingStore(base)
        let logger = Logger(label: "quota-test", sink: .discarding, clock: clock)
        let region = try QuotaService(region: "us-east", store: flaky, clock: clock, configuration: Self.deterministic, logger: logger)
        await region.step()
        _ = try await region.setPolicy(QuotaPolicy(limit: 1000, periodSeconds: 3600), for: Self.tenant)
        _ = try await region.reserve(tenant: Self.tenant, requestID: .test("job"), amount: 40)
        _ = try region.commit(tenant: Self.tenant, requestID: .test("job"), used: 40)

        flaky.loseNextTransaction(afterApplying: applied)
        clock.advance(by: .seconds(1))
        await region.step()
        #expect(try await region.status(tenant: Self.tenant).regionView?.writeInDoubt == true)
        clock.advance(by: .seconds(1))
        await region.step()

        let keyValue = try #require(try base.get(QuotaRecord.key(of: Self.tenant)))
        let record = try QuotaRecord.decode(keyValue.value, key: keyValue.key)
        #expect(record.consumed == 40)
        #expect(record.overspend == 0)
        #expect(try await region.status(tenant: Self.tenant).regionView?.writeInDoubt == false)
    }
}

/// A store that can lose the response of one transaction: it applies it (or
/// not) and then throws `unavailable`, as a network store does when the
/// connection drops mid-request.
final class LosingStore: LinearizableStore {
    private let base: any LinearizableStore
    /// Whether the next transaction is lost, and whether it is applied first.
    private let lose = Mutex<Bool?>(nil)

    init(_ base: any LinearizableStore) {
        self.base = base
    }

    func loseNextTransaction(afterApplying applied: Bool) {
        lose.withLock { $0 = applied }
    }

    func currentRevision() async throws(LinearizableStoreError) -> Int64 { try await base.currentRevision() }
    func get(_ key: String) async throws(LinearizableStoreError) -> KeyValue? { try await base.get(key) }
    func range(prefix: String) async throws(LinearizableStoreError) -> [KeyValue] { try await base.range(prefix: prefix) }
    func put(_ key: String, value: [UInt8], lease: LeaseID?) async throws(LinearizableStoreError) -> Int64 {
        try await base.put(key, value: value, lease: lease)
    }
    func delete(_ key: String) async throws(LinearizableStoreError) -> DeleteResult { try await base.delete(key) }

    func transaction(
        compares: [TransactionCompare], success: [TransactionOperation], failure: [TransactionOperation]
    ) async throws(LinearizableStoreError) -> TransactionResult {
        let losing = lose.withLock { state -> Bool? in
            defer { state = nil }
            return state
        }
        guard let applied = losing else {
            return try await base.transaction(compares: compares, success: success, failure: failure)
        }
        if applied {
            _ = try await base.transaction(compares: compares, success: success, failure: failure)
        }
        throw LinearizableStoreError(.unavailable, "the connection dropped before the answer arrived")
    }

    func grantLease(ttl: Duration) async throws(LinearizableStoreError) -> Lease { try await base.grantLease(ttl: ttl) }
    func keepAlive(_ id: LeaseID) async throws(LinearizableStoreError) -> Duration { try await base.keepAlive(id) }
    func revokeLease(_ id: LeaseID) async throws(LinearizableStoreError) { try await base.revokeLease(id) }
    func leaseTimeToLive(_ id: LeaseID) async throws(LinearizableStoreError) -> LeaseStatus { try await base.leaseTimeToLive(id) }
}

/// A store whose transactions can be held until the test resumes them, to
/// show what does not wait on the store.
final class StallingStore: LinearizableStore {
    private struct State {
        var stalling = false
        var held: [CheckedContinuation<Void, Never>] = []
        var watchers: [CheckedContinuation<Void, Never>] = []
    }

    private let base: any LinearizableStore
    /// Whether transactions are held, the held ones, and who waits for the first.
    private let state = Mutex(State())

    init(_ base: any LinearizableStore) {
        self.base = base
    }

    /// Holds every transaction from now until `resume()`.
    func stall() {
        state.withLock { $0.stalling = true }
    }

    /// Returns once a transaction is held.
    func waitUntilStalled() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let held = state.withLock { state -> Bool in
                if !state.held.isEmpty { return true }
                state.watchers.append(continuation)
                return false
            }
            if held { continuation.resume() }
        }
    }

    func resume() {
        let held = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.stalling = false
            defer { state.held = [] }
            return state.held
        }
        for continuation in held { continuation.resume() }
    }

    func currentRevision() async throws(LinearizableStoreError) -> Int64 { try await base.currentRevision() }
    func get(_ key: String) async throws(LinearizableStoreError) -> KeyValue? { try await base.get(key) }
    func range(prefix: String) async throws(LinearizableStoreError) -> [KeyValue] { try await base.range(prefix: prefix) }
    func put(_ key: String, value: [UInt8], lease: LeaseID?) async throws(LinearizableStoreError) -> Int64 {
        try await base.put(key, value: value, lease: lease)
    }
    func delete(_ key: String) async throws(LinearizableStoreError) -> DeleteResult { try await base.delete(key) }

    func transaction(
        compares: [TransactionCompare], success: [TransactionOperation], failure: [TransactionOperation]
    ) async throws(LinearizableStoreError) -> TransactionResult {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let (hold, watchers) = state.withLock { state -> (Bool, [CheckedContinuation<Void, Never>]) in
                guard state.stalling else { return (false, []) }
                state.held.append(continuation)
                defer { state.watchers = [] }
                return (true, state.watchers)
            }
            for watcher in watchers { watcher.resume() }
            if !hold { continuation.resume() }
        }
        return try await base.transaction(compares: compares, success: success, failure: failure)
    }

    func grantLease(ttl: Duration) async throws(LinearizableStoreError) -> Lease { try await base.grantLease(ttl: ttl) }
    func keepAlive(_ id: LeaseID) async throws(LinearizableStoreError) -> Duration { try await base.keepAlive(id) }
    func revokeLease(_ id: LeaseID) async throws(LinearizableStoreError) { try await base.revokeLease(id) }
    func leaseTimeToLive(_ id: LeaseID) async throws(LinearizableStoreError) -> LeaseStatus { try await base.leaseTimeToLive(id) }
}
