import Testing
@testable import Homeport

@Suite struct RegionLeaseTests {
    static func configuration() -> RegionLease.Configuration {
        var configuration = RegionLease.Configuration()
        configuration.ttl = .seconds(5)
        configuration.renewInterval = .milliseconds(1500)
        configuration.safetyMargin = .seconds(1)
        return configuration
    }

    @Test func grantThenServeUntilMargin() throws {
        var lease = try RegionLease(configuration: Self.configuration())
        #expect(!lease.canServe(nowMilliseconds: 0))
        #expect(lease.tick(nowMilliseconds: 0) == .grant(ttl: .seconds(5)))
        #expect(lease.tick(nowMilliseconds: 10) == nil)

        lease.granted(Lease(id: LeaseID(rawValue: 7), ttl: .seconds(5)))
        #expect(lease.canServe(nowMilliseconds: 100))
        // Validity counts from the request, less the one-second margin.
        #expect(lease.canServe(nowMilliseconds: 3999))
        #expect(!lease.canServe(nowMilliseconds: 4000))
    }

    @Test func renewalExtendsFromRequestTime() throws {
        var lease = try RegionLease(configuration: Self.configuration())
        _ = lease.tick(nowMilliseconds: 0)
        lease.granted(Lease(id: LeaseID(rawValue: 7), ttl: .seconds(5)))
        #expect(lease.tick(nowMilliseconds: 1499) == nil)
        #expect(lease.tick(nowMilliseconds: 1500) == .renew(LeaseID(rawValue: 7)))

        lease.renewed(remaining: .seconds(5))
        #expect(lease.canServe(nowMilliseconds: 5499))
        #expect(!lease.canServe(nowMilliseconds: 5500))
    }

    @Test func unavailableStoreFencesAtExpiry() throws {
        var lease = try RegionLease(configuration: Self.configuration())
        _ = lease.tick(nowMilliseconds: 0)
        lease.granted(Lease(id: LeaseID(rawValue: 7), ttl: .seconds(5)))

        var now: Int64 = 1500
        while now < 6000 {
            if lease.tick(nowMilliseconds: now) != nil {
                lease.failed(.unavailable, nowMilliseconds: now)
            }
            #expect(lease.canServe(nowMilliseconds: now) == (now < 4000))
            now += 100
        }
    }

    @Test func lostLeaseIsGrantedAgain() throws {
        var lease = try RegionLease(configuration: Self.configuration())
        _ = lease.tick(nowMilliseconds: 0)
        lease.granted(Lease(id: LeaseID(rawValue: 7), ttl: .seconds(5)))
        _ = lease.tick(nowMilliseconds: 1500)
        lease.failed(.leaseNotFound, nowMilliseconds: 1500)

        #expect(!lease.canServe(nowMilliseconds: 1500))
        #expect(lease.tick(nowMilliseconds: 1501) == .grant(ttl: .seconds(5)))
    }

    @Test func marginMustFitInsideTTL() {
        var configuration = Self.configuration()
        configuration.renewInterval = .seconds(4)
        #expect(throws: ConfigurationError.self) { try RegionLease(configuration: configuration) }
    }
}

@Suite struct RegionLeaseKeeperTests {
    @Test func partitionedNodeFencesItselfAndRecovers() async throws {
        let clock = ManualClock()
        let store = EmbeddedLinearizableStore(clock: clock)
        let keeper = try RegionLeaseKeeper(
            region: "us-east", configuration: RegionLeaseTests.configuration(), store: store, clock: clock,
            logger: Logger(label: "test", sink: .discarding))

        await keeper.step()
        #expect(keeper.canServe())
        #expect(try await store.get(RegionLeaseKeeper.leaseKey(of: "us-east")) != nil)

        // Cut off from the store: renewals fail, and the node stops serving a
        // margin before the store would expire the lease.
        store.setAvailable(false)
        for _ in 0..<40 {
            clock.advance(by: .milliseconds(100))
            await keeper.step()
        }
        #expect(!keeper.canServe())

        // The store expired the lease and its key; once reachable again the
        // keeper learns the lease is gone, takes a new one and serves again.
        clock.advance(by: .seconds(2))
        store.setAvailable(true)
        _ = store.reapExpiredLeases()
        #expect(try await store.get(RegionLeaseKeeper.leaseKey(of: "us-east")) == nil)
        for _ in 0..<3 {
            await keeper.step()
        }
        #expect(keeper.canServe())
        #expect(try await store.get(RegionLeaseKeeper.leaseKey(of: "us-east")) != nil)
    }

    @Test func fencedRegionRejectsHomeSessions() async throws {
        let topology = try RegionTopology(regions: [RegionEndpoint(name: "us-east")], latency: .zero)
        let clock = ManualClock()
        let cluster = try EmbeddedCluster(
            topology: topology, keyRing: try TokenKeyRing.generated(), clock: clock, logger: Logger(label: "test", sink: .discarding),
            replication: nil, lease: RegionLeaseTests.configuration())
        try await cluster.start()
        let client = HomeportClient()
        let baseURL = cluster.baseURL(of: "us-east")!

        let (session, _) = try await client.createSession(at: baseURL, tenant: "acme")
        cluster.linearizableStore!.setAvailable(false)
        clock.advance(by: .seconds(5))

        let error = await #expect(throws: HomeportClientError.self) {
            try await client.readTurns(at: baseURL, session, tail: 1)
        }
        await cluster.shutdown()

        guard case .problem(let status, let type, _)? = error else {
            Issue.record("expected a problem response, got \(String(describing: error))")
            return
        }
        #expect(status == 503)
        #expect(type == "region-fenced")
    }
}
