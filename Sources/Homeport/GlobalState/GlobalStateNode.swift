/// Settings of the eventually-global tier of one region.
public struct GlobalStateConfiguration: Sendable, Equatable {
    public var registerLimits: GlobalRegisterTable.Limits
    /// How far ahead of the wall clock a received stamp may be. Default 60 s.
    public var maximumForwardDrift: Duration
    public var replication: GlobalRegisterReplicator.Configuration
    public var rateLimits: RateLimiter.Configuration
    /// Live rate-limit windows a region keeps from other regions' counts. Default 65,536.
    public var maximumRateLimitWindows: Int

    public init(
        registerLimits: GlobalRegisterTable.Limits = GlobalRegisterTable.Limits(),
        maximumForwardDrift: Duration = HybridLogicalClock.defaultMaximumForwardDrift,
        replication: GlobalRegisterReplicator.Configuration = GlobalRegisterReplicator.Configuration(),
        rateLimits: RateLimiter.Configuration = RateLimiter.Configuration(), maximumRateLimitWindows: Int = 65_536
    ) {
        self.registerLimits = registerLimits
        self.maximumForwardDrift = maximumForwardDrift
        self.replication = replication
        self.rateLimits = rateLimits
        self.maximumRateLimitWindows = maximumRateLimitWindows
    }

    public func validate() throws(ConfigurationError) {
        try registerLimits.validate()
        try replication.validate()
        try rateLimits.validate()
        guard maximumForwardDrift >= .zero else {
            throw ConfigurationError(field: "maximumForwardDrift", detail: "must not be negative, got \(maximumForwardDrift)")
        }
        guard (1...10_000_000).contains(maximumRateLimitWindows) else {
            throw ConfigurationError(
                field: "maximumRateLimitWindows", detail: "must be from 1 to 10000000, got \(maximumRateLimitWindows)")
        }
    }
}

/// The state one region shares among its nodes: its global registers and
/// its rate-limit counters. Build it once per region.
public struct GlobalRegionState: Sendable {
    public let registers: GlobalRegisterStore
    public let counters: RegionRateLimitCounters

    /// - Parameter regions: every region of the deployment, `region` included.
    public init(
        region: String, regions: [String], configuration: GlobalStateConfiguration, clock: any WallClock, metrics: MetricsRegistry,
        logger: Logger
    ) throws(ConfigurationError) {
        try configuration.validate()
        registers = try GlobalRegisterStore(
            region: region, regions: regions, limits: configuration.registerLimits,
            maximumForwardDrift: configuration.maximumForwardDrift, clock: clock, metrics: metrics, logger: logger)
        counters = RegionRateLimitCounters(region: region, maximumWindows: configuration.maximumRateLimitWindows)
    }
}

/// The eventually-global tier as one node runs it: the replicator, the
/// rate limiter and the HTTP handler over its region's shared state.
/// `start()` runs the push, anti-entropy and count-exchange loops;
/// `stop()` ends them.
public final class GlobalStateNode: Sendable {
    public let state: GlobalRegionState
    public let replicator: GlobalRegisterReplicator
    public let rateLimiter: RateLimiter
    public let handler: GlobalStateRequestHandler

    public init(
        state: GlobalRegionState, configuration: GlobalStateConfiguration, transport: any InterRegionTransport, keyRing: TokenKeyRing,
        clock: any WallClock, metrics: MetricsRegistry, logger: Logger
    ) throws(ConfigurationError) {
        try configuration.validate()
        self.state = state
        replicator = try GlobalRegisterReplicator(
            store: state.registers, configuration: configuration.replication, transport: transport, keyRing: keyRing, clock: clock,
            metrics: metrics, logger: logger)
        rateLimiter = try RateLimiter(
            counters: state.counters, registers: state.registers, configuration: configuration.rateLimits, transport: transport,
            keyRing: keyRing, clock: clock, metrics: metrics, logger: logger)
        handler = GlobalStateRequestHandler(
            rateLimiter: rateLimiter, keyRing: keyRing, logger: logger,
            maximumReplyValueBytes: configuration.replication.maximumMessageValueBytes)
    }

    public var region: String { state.registers.region }

    public func start() {
        replicator.start()
        rateLimiter.start()
    }

    public func stop() async {
        await replicator.stop()
        await rateLimiter.stop()
    }
}
