import Synchronization

/// Several regions' nodes in one process, each with its own loopback
/// listener and memory store, sharing one token key ring. Each region ships
/// its session mutations to its neighbour (unless `replication` is nil), and
/// every call between regions pays the topology's latency matrix.
///
/// This is the embedded default that `homeport demo` and the tests run.
public final class EmbeddedCluster: Sendable {
    /// The settings every node of the cluster is built with.
    private struct Settings: Sendable {
        let limits: SessionStoreLimits
        let clock: any WallClock
        let logger: Logger
        let http: HTTPServerConfiguration
        let replication: ReplicationOutbox.Configuration?
        let lease: RegionLease.Configuration?
        let takeoverCheckInterval: Duration
    }

    public let topology: RegionTopology
    public let peers: InterRegionClient
    public let metrics: MetricsRegistry
    public let keyRing: TokenKeyRing
    /// The linearizable store that holds the region leases, shared by all regions.
    public let linearizableStore: EmbeddedLinearizableStore?
    private let settings: Settings
    /// The current node of each region, in topology order; `restart` replaces one.
    private let current: Mutex<[RegionNode]>

    /// The regions' current nodes, in topology order.
    public var nodes: [RegionNode] { current.withLock { $0 } }

    /// Builds one node per region of `topology` (ports 0 bind ephemeral ports).
    ///
    /// - Throws: `ConfigurationError` when the replication or lease settings are invalid.
    public init(
        topology: RegionTopology,
        limits: SessionStoreLimits = SessionStoreLimits(),
        keyRing: TokenKeyRing,
        clock: any WallClock = SystemClock(),
        logger: Logger,
        http: HTTPServerConfiguration = HTTPServerConfiguration(),
        replication: ReplicationOutbox.Configuration? = ReplicationOutbox.Configuration(),
        lease: RegionLease.Configuration? = RegionLease.Configuration(),
        takeoverCheckInterval: Duration = .milliseconds(500)
    ) throws(ConfigurationError) {
        self.topology = topology
        self.keyRing = keyRing
        self.metrics = MetricsRegistry()
        self.peers = InterRegionClient(topology: topology, clock: clock)
        self.linearizableStore = lease.map { _ in EmbeddedLinearizableStore(clock: clock, logger: logger) }
        self.settings = Settings(
            limits: limits, clock: clock, logger: logger, http: http, replication: replication, lease: lease,
            takeoverCheckInterval: takeoverCheckInterval)
        self.current = Mutex([])
        let nodes = try topology.regions.map { endpoint throws(ConfigurationError) in try makeNode(endpoint) }
        current.withLock { $0 = nodes }
    }

    /// Builds a region's node with a fresh memory store.
    private func makeNode(_ endpoint: RegionEndpoint) throws(ConfigurationError) -> RegionNode {
        var configuration = RegionNodeConfiguration(region: endpoint.name, http: settings.http)
        configuration.http.host = endpoint.host
        configuration.http.port = endpoint.port
        let (clock, logger) = (settings.clock, settings.logger)

        let journal = SessionJournal(log: nil)
        let store = MemorySessionStore(limits: settings.limits, journal: journal)
        var shipper: ReplicationShipper?
        if let replication = settings.replication, let neighbour = topology.neighbour(of: endpoint.name) {
            let created = try ReplicationShipper(
                region: endpoint.name, neighbour: neighbour, configuration: replication, peers: peers, store: store,
                keyRing: keyRing, clock: clock, metrics: metrics, logger: logger)
            journal.attach(created)
            shipper = created
        }

        var keeper: RegionLeaseKeeper?
        var takeovers: TakeoverMonitor?
        if let lease = settings.lease, let linearizableStore {
            keeper = try RegionLeaseKeeper(
                region: endpoint.name, configuration: lease, store: linearizableStore, clock: clock, logger: logger)
            // A region takes over the regions whose standby copies it holds.
            if settings.replication != nil {
                let watched = topology.regionNames.filter { topology.neighbour(of: $0) == endpoint.name }
                takeovers = TakeoverMonitor(
                    region: endpoint.name, watched: watched, store: linearizableStore, clock: clock, logger: logger,
                    interval: settings.takeoverCheckInterval)
            }
        }

        return RegionNode(
            configuration: configuration, store: store, limits: settings.limits, keyRing: keyRing, peers: peers,
            metrics: metrics, clock: clock, logger: logger, replication: shipper, leaseKeeper: keeper, takeovers: takeovers,
            linearizableStore: linearizableStore)
    }

    /// Takes every region's lease, then starts every node and records the ports they bound.
    public func start() async throws(HTTPServerError) {
        for node in nodes {
            try await start(node)
        }
    }

    private func start(_ node: RegionNode) async throws(HTTPServerError) {
        await node.leaseKeeper?.step()
        node.leaseKeeper?.start()
        let port = try node.start()
        peers.setPort(port, of: node.region)
        node.replication?.start()
        node.takeovers?.start()
    }

    /// Stops a region as a crash would: its listener, lease renewal,
    /// replication and takeover checks stop, and its memory store is not read
    /// again. Its lease expires in the store after the TTL, and its neighbour
    /// then takes it over.
    public func crash(_ region: String) async {
        guard let node = node(region) else { return }
        await stop(node)
    }

    /// Starts a fresh node for a crashed region, with an empty memory store,
    /// as a restarted process without a data directory would come back. It
    /// takes a new lease; sessions that were taken over stay with their new
    /// home, and requests for them are sent there.
    public func restart(_ region: String) async throws {
        guard let index = topology.regions.firstIndex(where: { $0.name == region }) else { return }
        // Come back on the same port, so clients that knew the region find it again.
        var endpoint = topology.regions[index]
        endpoint.port = peers.endpoint(of: region)?.port ?? endpoint.port
        let node = try makeNode(endpoint)
        current.withLock { $0[index] = node }
        try await start(node)
    }

    public func node(_ region: String) -> RegionNode? {
        nodes.first { $0.region == region }
    }

    /// Returns the base URL of a region's node once it has started.
    public func baseURL(of region: String) -> String? {
        peers.endpoint(of: region)?.baseURL
    }

    private func stop(_ node: RegionNode) async {
        await node.leaseKeeper?.stop()
        await node.takeovers?.stop()
        await node.replication?.stop()
        await node.shutdown()
    }

    public func shutdown() async {
        for node in nodes {
            await stop(node)
        }
    }
}
