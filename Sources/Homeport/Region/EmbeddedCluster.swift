/// Several regions' nodes in one process, each with its own loopback
/// listener and memory store, sharing one token key ring. Each region ships
/// its session mutations to its neighbour (unless `replication` is nil), and
/// every call between regions pays the topology's latency matrix.
///
/// This is the embedded default that `homeport demo` and the tests run.
public final class EmbeddedCluster: Sendable {
    public let topology: RegionTopology
    public let nodes: [RegionNode]
    public let peers: InterRegionClient
    public let metrics: MetricsRegistry
    public let keyRing: TokenKeyRing
    /// The linearizable store that holds the region leases, shared by all regions.
    public let linearizableStore: EmbeddedLinearizableStore?

    /// Builds one node per region of `topology` (ports 0 bind ephemeral ports).
    ///
    /// - Throws: `ConfigurationError` when the replication settings are invalid.
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
        let metrics = MetricsRegistry()
        let peers = InterRegionClient(topology: topology, clock: clock)
        self.metrics = metrics
        self.peers = peers
        let linearizableStore = lease.map { _ in EmbeddedLinearizableStore(clock: clock, logger: logger) }
        self.linearizableStore = linearizableStore
        var nodes: [RegionNode] = []
        for endpoint in topology.regions {
            var configuration = RegionNodeConfiguration(region: endpoint.name, http: http)
            configuration.http.host = endpoint.host
            configuration.http.port = endpoint.port
            let journal = SessionJournal(log: nil)
            let store = MemorySessionStore(limits: limits, journal: journal)
            var shipper: ReplicationShipper?
            if let replication, let neighbour = topology.neighbour(of: endpoint.name) {
                shipper = try ReplicationShipper(
                    region: endpoint.name, neighbour: neighbour, configuration: replication, peers: peers, store: store,
                    keyRing: keyRing, clock: clock, metrics: metrics, logger: logger)
                journal.attach(shipper!)
            }
            var keeper: RegionLeaseKeeper?
            var takeovers: TakeoverMonitor?
            if let lease, let linearizableStore {
                keeper = try RegionLeaseKeeper(
                    region: endpoint.name, configuration: lease, store: linearizableStore, clock: clock, logger: logger)
                // A region takes over the regions whose standby copies it holds.
                let watched = topology.regionNames.filter { topology.neighbour(of: $0) == endpoint.name }
                if replication != nil {
                    takeovers = TakeoverMonitor(
                        region: endpoint.name, watched: watched, store: linearizableStore, clock: clock, logger: logger,
                        interval: takeoverCheckInterval)
                }
            }
            nodes.append(
                RegionNode(
                    configuration: configuration, store: store, limits: limits, keyRing: keyRing, peers: peers, metrics: metrics,
                    clock: clock, logger: logger, replication: shipper, leaseKeeper: keeper, takeovers: takeovers,
                    linearizableStore: linearizableStore))
        }
        self.nodes = nodes
    }

    /// Takes every region's lease, then starts every node and records the ports they bound.
    public func start() async throws(HTTPServerError) {
        for node in nodes {
            await node.leaseKeeper?.step()
            node.leaseKeeper?.start()
        }
        for node in nodes {
            let port = try node.start()
            peers.setPort(port, of: node.region)
        }
        for node in nodes {
            node.replication?.start()
            node.takeovers?.start()
        }
    }

    /// Stops a region as a crash would: its listener, lease renewal,
    /// replication and takeover checks stop, and its memory store is not read
    /// again. Its lease expires in the store after the TTL, and its neighbour
    /// then takes it over.
    public func crash(_ region: String) async {
        guard let node = node(region) else { return }
        await node.leaseKeeper?.stop()
        await node.takeovers?.stop()
        await node.replication?.stop()
        await node.shutdown()
    }

    public func node(_ region: String) -> RegionNode? {
        nodes.first { $0.region == region }
    }

    /// Returns the base URL of a region's node once it has started.
    public func baseURL(of region: String) -> String? {
        peers.endpoint(of: region)?.baseURL
    }

    public func shutdown() async {
        for node in nodes {
            await node.replication?.stop()
            await node.leaseKeeper?.stop()
            await node.takeovers?.stop()
        }
        for node in nodes {
            await node.shutdown()
        }
    }
}
