import Foundation
import Synchronization

/// A `LocalCluster` as a benchmark target: Redis per region, a three-member
/// etcd cluster behind delay proxies and one `homeport serve` process per
/// region, so consensus latency is measured, not modelled. The cluster
/// starts on the first deploy; the next mode restarts only the serve
/// processes with its policy file, keeping Redis and etcd.
public final class ClusterBenchmarkTarget: BenchmarkTarget {
    public let name = "cluster"
    public let consensusLatency = "measured"
    public let configuration: LocalCluster.Configuration
    public let policy: PolicyTable
    private let logger: Logger
    /// Holds each mode's policy file; removed on tear-down.
    private let policyDirectory: String
    private let cluster = Mutex<LocalCluster?>(nil)

    /// - Parameter configuration: the cluster to start; its `policyPath` is
    ///   replaced by each mode's table.
    /// - Parameter policy: the default mode's table; the other mode derives from it.
    public init(configuration: LocalCluster.Configuration, policy: PolicyTable, logger: Logger) {
        self.configuration = configuration
        self.policy = policy
        self.logger = logger
        self.policyDirectory = configuration.directory + "-policies"
    }

    /// The running cluster, once deployed.
    public var running: LocalCluster? { cluster.withLock { $0 } }

    public func deploy(_ mode: BenchmarkMode) async throws -> [String: String] {
        try FileManager.default.createDirectory(atPath: policyDirectory, withIntermediateDirectories: true)
        let policyPath = (policyDirectory as NSString).appendingPathComponent("\(mode.rawValue).json")
        try mode.policy(from: policy).jsonData().write(to: URL(fileURLWithPath: policyPath))

        if let running {
            try await running.restartServers(policyPath: policyPath)
            return running.baseURLs
        }
        var settings = configuration
        settings.policyPath = policyPath
        let started = try await LocalCluster.start(settings, logger: logger)
        cluster.withLock { $0 = started }
        return started.baseURLs
    }

    public func tearDown() async {
        let running = cluster.withLock { current in
            defer { current = nil }
            return current
        }
        do {
            try await running?.stop()
        } catch {
            logger.error("the benchmark cluster did not stop cleanly", ["directory": configuration.directory, "error": "\(error)"])
        }
        try? FileManager.default.removeItem(atPath: policyDirectory)
    }
}
