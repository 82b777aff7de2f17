@testable import Homeport

extension QuotaService.Configuration {
    /// The test settings: the default lease (5 s TTL, renewed every 1.5 s,
    /// 1 s safety margin), a 60 s reservation TTL, and chunks of at least
    /// 100 tokens and at most a quarter of the free budget.
    static var testing: QuotaService.Configuration {
        var configuration = QuotaService.Configuration()
        configuration.sizing.minimumChunkTokens = 100
        configuration.settleInterval = .seconds(1)
        return configuration
    }
}

/// Quota services of several regions in one process, each with its own
/// view of one shared embedded store, all on one manual clock. A test cuts
/// a region off with `views[region].setReachable(false)`.
struct QuotaTestCluster {
    static let regions = ["us-east", "eu-west", "ap-south"]

    let clock: ManualClock
    let store: EmbeddedLinearizableStore
    let views: [String: PartitionableStoreView]
    let services: [String: QuotaService]
    let metrics: [String: MetricsRegistry]

    init(regions: [String] = QuotaTestCluster.regions, configuration: QuotaService.Configuration = .testing) throws {
        let clock = ManualClock()
        let store = EmbeddedLinearizableStore(clock: clock)
        let logger = Logger(label: "quota-test", sink: .discarding, clock: clock)
        var views: [String: PartitionableStoreView] = [:]
        var services: [String: QuotaService] = [:]
        var metrics: [String: MetricsRegistry] = [:]
        for region in regions {
            let view = PartitionableStoreView(store)
            let registry = MetricsRegistry()
            views[region] = view
            metrics[region] = registry
            services[region] = try QuotaService(
                region: region, store: view, clock: clock, configuration: configuration, metrics: registry, logger: logger)
        }
        self.clock = clock
        self.store = store
        self.views = views
        self.services = services
        self.metrics = metrics
    }

    subscript(region: String) -> QuotaService { services[region]! }

    /// Steps every region in `regions` (all by default) once.
    func step(_ regions: [String]? = nil) async {
        for region in regions ?? services.keys.sorted() {
            await services[region]!.step()
        }
    }

    /// Moves the clock forward in steps of `increment`, stepping the listed
    /// regions after each, so their leases are renewed as time passes.
    func advance(by duration: Duration, stepping regions: [String]? = nil, increment: Duration = .milliseconds(250)) async {
        var elapsed = Duration.zero
        while elapsed < duration {
            let delta = min(increment, duration - elapsed)
            clock.advance(by: delta)
            elapsed += delta
            await step(regions)
        }
    }

    /// Reads the tenant's record straight from the shared store.
    func record(_ tenant: TenantID) throws -> QuotaRecord? {
        guard let keyValue = try store.get(QuotaRecord.key(of: tenant)) else { return nil }
        return try QuotaRecord.decode(keyValue.value, key: keyValue.key)
    }
}

extension ReservationID {
    /// Returns a request id for tests, trapping on an invalid literal.
    static func test(_ text: String) -> ReservationID { ReservationID(text)! }
}

extension TenantID {
    static func test(_ text: String) -> TenantID { TenantID(text)! }
}
