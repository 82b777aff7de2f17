import Synchronization

/// The embedded default as a benchmark target: three regions in this process
/// on the latency matrix, with the linearizable store in process and
/// consensus latency modelled from the matrix (`ConsensusLatencyModel`).
/// Each mode gets a fresh cluster.
public final class EmbeddedBenchmarkTarget: BenchmarkTarget {
    public let name = "embedded"
    public let consensusLatency = "modelled"
    public let topology: RegionTopology
    public let policy: PolicyTable
    public let model: ConsensusLatencyModel
    private let logger: Logger
    private let cluster = Mutex<EmbeddedCluster?>(nil)

    /// - Parameter topology: regions (their ports are replaced by ephemeral
    ///   ones) and the latency matrix.
    /// - Parameter policy: the default mode's table; the other mode derives from it.
    public init(topology: RegionTopology, policy: PolicyTable, model: ConsensusLatencyModel, logger: Logger) {
        var local = topology
        local.regions = topology.regions.map { RegionEndpoint(name: $0.name, host: "127.0.0.1", port: 0) }
        self.topology = local
        self.policy = policy
        self.model = model
        self.logger = logger
    }

    public func deploy(_ mode: BenchmarkMode) async throws -> [String: String] {
        await tearDown()

        let table = mode.policy(from: policy)
        let started = try EmbeddedCluster(
            topology: topology, limits: try SessionStoreLimits(policy: table), keyRing: try TokenKeyRing.generated(),
            logger: logger, policy: table, consensusLatency: model)
        try await started.start()
        cluster.withLock { $0 = started }

        var baseURLs: [String: String] = [:]
        for region in topology.regionNames {
            baseURLs[region] = started.baseURL(of: region)
        }
        return baseURLs
    }

    public func tearDown() async {
        let running = cluster.withLock { current in
            defer { current = nil }
            return current
        }
        await running?.shutdown()
    }
}
