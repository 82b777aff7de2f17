import Synchronization

/// Several regions' nodes in one process, each with its own loopback
/// listener and memory store, sharing one token key ring. Each region ships
/// its session mutations to its neighbour (unless `replication` is nil), and
/// every call between regions pays the topology's latency matrix.
///
/// This is the embedded default that `homeport demo` and the tests run.
public final class EmbeddedCluster: Sendable {
    public let topology: RegionTopology
    public let peers: InterRegionClient
    public let metrics: MetricsRegistry
    public let keyRing: TokenKeyRing
    /// The linearizable store that holds the region leases, shared by all regions.
    public let linearizableStore: EmbeddedLinearizableStore?
    /// The settings every node of the cluster is built with.
    public let assembly: RegionAssembly
    /// The current node of each region, in topology order; `restart` replaces one.
    private let current: Mutex<[RegionNode]>
    /// Replication statistics of crashed nodes, by region, kept for the report.
    private let retiredStatistics = Mutex<[String: [ReplicationShipper.Statistics]]>([:])

    /// The regions' current nodes, in topology order.
    public var nodes: [RegionNode] { current.withLock { $0 } }

    /// Builds one node per region of `topology` (ports 0 bind ephemeral ports).
    ///
    /// - Parameter dataDirectory: where each region keeps its session log, so
    ///   that `restart` brings back every acknowledged write; nil keeps
    ///   sessions in memory only.
    /// - Parameter policy: where sessions live (see `SessionPlacement`).
    /// - Parameter consensusLatency: the modelled latency each region pays
    ///   for a call to the linearizable store; nil adds none.
    /// - Throws: `ConfigurationError` when the replication or lease settings
    ///   are invalid, `SessionLogError` when a log cannot be opened.
    public init(
        topology: RegionTopology,
        limits: SessionStoreLimits = SessionStoreLimits(),
        keyRing: TokenKeyRing,
        clock: any WallClock = SystemClock(),
        logger: Logger,
        http: HTTPServerConfiguration = HTTPServerConfiguration(),
        replication: ReplicationOutbox.Configuration? = ReplicationOutbox.Configuration(),
        lease: RegionLease.Configuration? = RegionLease.Configuration(),
        takeoverCheckInterval: Duration = .milliseconds(500),
        dataDirectory: String? = nil,
        fsync: FsyncPolicy = .periodic(.seconds(1)),
        policy: PolicyTable = .defaultTable,
        consensusLatency: ConsensusLatencyModel? = nil
    ) throws {
        self.topology = topology
        self.keyRing = keyRing
        self.metrics = MetricsRegistry()
        self.peers = InterRegionClient(topology: topology, clock: clock)
        // Sessions behind consensus need the store even without leases.
        let needsStore = lease != nil || (try? SessionPlacement(policy: policy)) == .consensus
        self.linearizableStore = needsStore ? EmbeddedLinearizableStore(clock: clock, logger: logger) : nil
        var assembly = RegionAssembly(
            topology: topology, limits: limits, policy: policy, keyRing: keyRing, clock: clock, logger: logger, metrics: metrics,
            peers: peers)
        assembly.consensusLatency = consensusLatency
        assembly.http = http
        assembly.replication = replication
        assembly.lease = lease
        assembly.linearizableStore = linearizableStore
        assembly.takeoverCheckInterval = takeoverCheckInterval
        assembly.dataDirectory = dataDirectory
        assembly.fsync = fsync
        self.assembly = assembly
        self.current = Mutex([])
        let nodes = try topology.regions.map { endpoint in try assembly.makeNode(endpoint) }
        current.withLock { $0 = nodes }
    }

    /// Starts every node (lease first) and records the ports they bound.
    public func start() async throws(HTTPServerError) {
        for node in nodes {
            peers.setPort(try await node.startServing(), of: node.region)
        }
    }

    /// Stops a region as a crash would: its listener, lease renewal,
    /// replication and takeover checks stop, and its memory store is not read
    /// again. Its lease expires in the store after the TTL, and its neighbour
    /// then takes it over.
    ///
    /// Returns the entries its neighbour had not acknowledged: what a crash
    /// without a data directory may lose (the recovery point).
    @discardableResult
    public func crash(_ region: String) async -> Int {
        guard let node = node(region) else { return 0 }
        await node.stopServing()
        guard let statistics = node.replication?.statistics() else { return 0 }
        retiredStatistics.withLock { $0[region, default: []].append(statistics) }
        return statistics.pendingEntries
    }

    /// Returns the replication statistics of every node the region has run,
    /// crashed ones first, then the current one.
    public func replicationStatistics(of region: String) -> [ReplicationShipper.Statistics] {
        let retired = retiredStatistics.withLock { $0[region] ?? [] }
        return retired + (node(region)?.replication.map { [$0.statistics()] } ?? [])
    }

    /// Starts a fresh node for a crashed region, as a restarted process
    /// would come back: with every acknowledged write when the cluster has a
    /// data directory, empty otherwise. It takes a new lease and, if it was
    /// taken over meanwhile, reconciles forward before it serves. Sessions
    /// that were taken over stay with their new home.
    public func restart(_ region: String) async throws {
        guard let index = topology.regions.firstIndex(where: { $0.name == region }) else { return }
        // Come back on the same port, so clients that knew the region find it again.
        var endpoint = topology.regions[index]
        endpoint.port = peers.endpoint(of: region)?.port ?? endpoint.port
        let node = try assembly.makeNode(endpoint)
        current.withLock { $0[index] = node }
        peers.setPort(try await node.startServing(), of: region)
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
            await node.stopServing()
        }
    }
}
