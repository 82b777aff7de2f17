/// A deployment the benchmark replays against: the embedded cluster in this
/// process, or a cluster of separate processes.
public protocol BenchmarkTarget: Sendable {
    /// `embedded` or `cluster`, used in tables and file names.
    var name: String { get }
    /// The source of consensus latency on this target, for the report:
    /// `modelled` from the matrix, or `measured` on real etcd.
    var consensusLatency: String { get }

    /// Makes the target serve `mode`'s policy and returns each region's base
    /// URL. A target that served another mode before is reconfigured; the
    /// sessions of earlier replays may stay.
    func deploy(_ mode: BenchmarkMode) async throws -> [String: String]

    /// Stops everything the target started.
    func tearDown() async
}

/// What every replay of a benchmark shares: the trace, its sessions and the
/// replay settings; the runner sets the roaming share of each replay.
public struct BenchmarkPlan: Sendable {
    public var trace: ConversationTrace
    public var sessions: RebuiltSessions
    public var regions: [String]
    public var replay: ReplayConfiguration
    /// Roaming shares to replay in each mode, each from 0 to 1.
    public var roamingShares: [Double]

    public init(
        trace: ConversationTrace, sessions: RebuiltSessions, regions: [String], replay: ReplayConfiguration,
        roamingShares: [Double]
    ) {
        self.trace = trace
        self.sessions = sessions
        self.regions = regions
        self.replay = replay
        self.roamingShares = roamingShares
    }
}

/// Replays a plan on a target in both modes, every roaming share in each.
public struct BenchmarkRunner: Sendable {
    public var plan: BenchmarkPlan
    public var logger: Logger
    /// Called after each replay, for progress output.
    public var progress: @Sendable (BenchmarkRun) -> Void

    public init(plan: BenchmarkPlan, logger: Logger, progress: @escaping @Sendable (BenchmarkRun) -> Void = { _ in }) {
        self.plan = plan
        self.logger = logger
        self.progress = progress
    }

    /// Runs every mode and share, default mode first, and tears the target
    /// down at the end, also when a deploy fails.
    ///
    /// - Throws: what the target's `deploy` throws.
    public func run(on target: any BenchmarkTarget) async throws -> [BenchmarkRun] {
        var runs: [BenchmarkRun] = []
        do {
            for mode in BenchmarkMode.allCases {
                let baseURLs = try await target.deploy(mode)
                for share in plan.roamingShares {
                    var configuration = plan.replay
                    configuration.roamingShare = share
                    let replay = TraceReplay(
                        trace: plan.trace, sessions: plan.sessions, regions: plan.regions, baseURLs: baseURLs,
                        configuration: configuration)
                    let run = BenchmarkRun(target: target.name, mode: mode, roamingShare: share, outcome: await replay.run())
                    progress(run)
                    runs.append(run)
                }
            }
        } catch {
            await target.tearDown()
            throw error
        }
        await target.tearDown()
        return runs
    }
}
