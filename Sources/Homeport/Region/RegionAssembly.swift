import Foundation

/// Builds region nodes with every part wired: store and session log,
/// replication shipper, lease keeper and takeover monitor. `EmbeddedCluster`,
/// `homeport serve` and the fault-injection harness all build their nodes
/// here, so they run the same code.
public struct RegionAssembly: Sendable {
    public var topology: RegionTopology
    public var limits: SessionStoreLimits
    public var policy: PolicyTable
    public var keyRing: TokenKeyRing
    public var clock: any WallClock
    public var logger: Logger
    public var metrics: MetricsRegistry
    public var peers: any InterRegionTransport
    public var http: HTTPServerConfiguration
    /// Ship each region's mutations to its neighbour; nil turns replication off.
    public var replication: ReplicationOutbox.Configuration?
    /// Hold region leases and take over failed neighbours; nil turns both off.
    public var lease: RegionLease.Configuration?
    /// Holds the leases and takeover records; required with `lease`.
    public var linearizableStore: (any LinearizableStore)?
    public var takeoverCheckInterval: Duration = .milliseconds(500)
    /// The directory of each region's session log (`<region>.log`). Nil keeps
    /// sessions in memory only.
    public var dataDirectory: String?
    public var fsync: FsyncPolicy = .periodic(.seconds(1))
    /// Sessions per request of a returning region's reconcile-forward.
    public var reconcileSessionsPerRequest = 512
    /// Global registers (router weights) and rate limits; nil turns them off.
    public var globalState: GlobalStateConfiguration? = GlobalStateConfiguration()
    /// Exactly-once billing; it runs only with a linearizable store. Its
    /// usage log goes to `<data dir>/<region>-billing` with a data directory.
    public var billing: BillingRecorder.Configuration? = BillingRecorder.Configuration()
    /// Usage quotas with lease chunks; they run only with a linearizable store.
    public var quotas: QuotaService.Configuration? = QuotaService.Configuration()
    /// The store of home sessions when the policy places sessions at a home region.
    public var sessionBackend: SessionBackend = .memory
    /// Delays every call a region makes to the linearizable store by the
    /// consensus latency this model gives for the region; nil adds none.
    public var consensusLatency: ConsensusLatencyModel?

    /// The store a region keeps its home sessions in.
    public enum SessionBackend: Sendable, Equatable {
        /// In process memory, with the session log in `dataDirectory` when
        /// one is set.
        case memory
        /// In a Redis server. Each region's keys start with the
        /// configuration's prefix followed by `:<region>`, so regions can
        /// share a server. The session log is not used, because Redis's
        /// append-only file is the log.
        case redis(RedisSessionStore.Configuration)
    }

    public init(
        topology: RegionTopology, limits: SessionStoreLimits, policy: PolicyTable = .defaultTable, keyRing: TokenKeyRing,
        clock: any WallClock, logger: Logger, metrics: MetricsRegistry, peers: any InterRegionTransport
    ) {
        self.topology = topology
        self.limits = limits
        self.policy = policy
        self.keyRing = keyRing
        self.clock = clock
        self.logger = logger
        self.metrics = metrics
        self.peers = peers
        self.http = HTTPServerConfiguration()
        self.replication = ReplicationOutbox.Configuration()
        self.lease = nil
        self.linearizableStore = nil
    }

    /// Returns the path of a region's session log, or nil without a data directory.
    public func logPath(of region: String) -> String? {
        dataDirectory.map { ($0 as NSString).appendingPathComponent("\(region).log") }
    }

    /// Builds the node of `endpoint`'s region. With a data directory it first
    /// rebuilds the region's sessions from its log, so the node comes back
    /// with every acknowledged write. The node is not started.
    ///
    /// - Throws: `ConfigurationError` for invalid replication or lease
    ///   settings, `SessionLogError` when the log cannot be read or opened.
    public func makeNode(_ endpoint: RegionEndpoint) throws -> RegionNode {
        var configuration = RegionNodeConfiguration(region: endpoint.name, http: http)
        configuration.http.host = endpoint.host
        configuration.http.port = endpoint.port
        configuration.policy = policy
        configuration.reconcileSessionsPerRequest = reconcileSessionsPerRequest

        let placement = try SessionPlacement(policy: policy)
        configuration.sessionPlacement = placement
        let linearizableStore = regionalLinearizableStore(of: endpoint.name)
        let journal: SessionJournal
        let store: any SessionStore
        switch placement {
        case .consensus:
            guard let linearizableStore else {
                throw ConfigurationError(
                    field: "policy.conversation_buffer.consistency",
                    detail: "the session kinds are linearizable, which needs a linearizable store; configure etcd or the embedded store")
            }
            journal = SessionJournal(log: nil)
            store = ConsensusSessionStore(store: linearizableStore, limits: limits)
        case .homeRegion:
            (store, journal) = try makeHomeStore(region: endpoint.name)
        }

        var shipper: ReplicationShipper?
        // With sessions behind consensus, every region reads the shared
        // store: nothing to replicate, fence or take over.
        if placement == .homeRegion, let replication, let neighbour = topology.neighbour(of: endpoint.name) {
            let created = try ReplicationShipper(
                region: endpoint.name, neighbour: neighbour, configuration: replication, peers: peers, store: store,
                keyRing: keyRing, clock: clock, metrics: metrics, logger: logger)
            journal.attach(created)
            shipper = created
        }

        var keeper: RegionLeaseKeeper?
        var takeovers: TakeoverMonitor?
        if placement == .homeRegion, let lease, let linearizableStore {
            keeper = try RegionLeaseKeeper(
                region: endpoint.name, configuration: lease, store: linearizableStore, clock: clock, logger: logger)
            // A region takes over the regions whose standby copies it holds.
            if replication != nil {
                let watched = topology.regionNames.filter { topology.neighbour(of: $0) == endpoint.name }
                takeovers = TakeoverMonitor(
                    region: endpoint.name, watched: watched, store: linearizableStore, clock: clock, logger: logger,
                    interval: takeoverCheckInterval)
            }
        }

        return RegionNode(
            configuration: configuration, store: store, limits: limits, keyRing: keyRing, peers: peers, metrics: metrics,
            clock: clock, logger: logger, replication: shipper, leaseKeeper: keeper, takeovers: takeovers,
            linearizableStore: linearizableStore, services: try makeServices(region: endpoint.name))
    }

    /// Builds the store of a region's home sessions and the journal that
    /// feeds its replication. A memory store with a data directory first
    /// rebuilds the sessions from the region's log.
    private func makeHomeStore(region: String) throws -> (store: any SessionStore, journal: SessionJournal) {
        switch sessionBackend {
        case .memory:
            var recovered: [StandbySession] = []
            var sessionLog: SessionLog?
            if let path = logPath(of: region) {
                let entries = try SessionLog.recover(path: path)
                recovered = try SessionLog.rebuildSessions(from: entries, region: region, limits: limits)
                logger.info(
                    "session log recovered", ["region": region, "entries": "\(entries.count)", "sessions": "\(recovered.count)"])
                sessionLog = try SessionLog(path: path, policy: fsync, clock: clock)
            }
            let journal = SessionJournal(log: sessionLog)
            let store = MemorySessionStore(limits: limits, journal: journal)
            store.restore(recovered)
            return (store, journal)

        case .redis(var redis):
            redis.keyPrefix += ":\(region)"
            // Connections open on first use, so an unreachable server shows
            // only in requests; name it here for the operator.
            logger.info(
                "session store: Redis", ["region": region, "address": "\(redis.host):\(redis.port)", "keyPrefix": redis.keyPrefix])
            let journal = SessionJournal(log: nil)
            let store = try RedisSessionStore(
                configuration: redis, limits: limits, journal: journal, logger: logger.with(["region": region]))
            return (store, journal)
        }
    }

    /// Returns the linearizable store that `region` calls, wrapped in the
    /// modelled consensus latency when one is configured.
    private func regionalLinearizableStore(of region: String) -> (any LinearizableStore)? {
        guard let linearizableStore else { return nil }
        guard let consensusLatency else { return linearizableStore }
        return ModelledLatencyStore(base: linearizableStore, region: region, model: consensusLatency, clock: clock)
    }

    /// Builds the region's services beside its sessions: global state, and
    /// billing and quotas when a linearizable store is configured.
    private func makeServices(region: String) throws -> [any RegionService] {
        let linearizableStore = regionalLinearizableStore(of: region)
        var services: [any RegionService] = []
        if let globalState {
            let state = try GlobalRegionState(
                region: region, regions: topology.regionNames, configuration: globalState, clock: clock, metrics: metrics,
                logger: logger)
            let node = try GlobalStateNode(
                state: state, configuration: globalState, transport: peers, keyRing: keyRing, clock: clock, metrics: metrics,
                logger: logger)
            services.append(GlobalStateService(node: node))
        }
        if var billing, let linearizableStore {
            if let directory = dataDirectory {
                billing.dataDirectory = (directory as NSString).appendingPathComponent("\(region)-billing")
                billing.fsync = fsync
            }
            let recorder = try BillingRecorder(
                region: region, configuration: billing, store: linearizableStore, clock: clock, logger: logger, metrics: metrics)
            services.append(BillingService(recorder: recorder))
        }
        if let quotas, let linearizableStore {
            let service = try QuotaService(
                region: region, store: linearizableStore, clock: clock, configuration: quotas, metrics: metrics, logger: logger)
            services.append(QuotaRegionService(service: service))
        }
        return services
    }
}

extension RegionNode {
    /// Starts a built node in the order that keeps its promises: take the
    /// region's lease, reconcile forward if the region was taken over while
    /// it was away, then listen, ship replication and watch the neighbours.
    /// Returns the bound port.
    public func startServing() async throws(HTTPServerError) -> UInt16 {
        await leaseKeeper?.step()
        await reconcileIfNeeded()
        leaseKeeper?.start()
        for service in services {
            await service.start()
        }
        let port = try start()
        replication?.start()
        takeovers?.start()
        return port
    }

    /// Stops everything `startServing` started, as a crash would stop it:
    /// nothing is drained.
    public func stopServing() async {
        await replication?.stop()
        await leaseKeeper?.stop()
        await takeovers?.stop()
        for service in services {
            await service.stop()
        }
        await shutdown()
        store.shutdown()
    }
}
