@testable import Homeport

/// The eventually-global tier of several regions in one process, wired
/// through a `SteppedRegionNetwork` on a manual clock.
///
/// Each region has one `GlobalRegionState` shared by `nodesPerRegion`
/// nodes. The loops that a deployment runs on every node (push after a
/// write, anti-entropy, count exchange) run here as the network's
/// activities, at node 0 of each region, because the nodes of a region
/// share the state the loops read.
final class GlobalStateCluster: Sendable {
    /// The default topology's one-way delays: us-east–us-west 44 ms,
    /// us-east–eu-west 40 ms, us-west–eu-west 68 ms.
    static let regions = ["us-east", "us-west", "eu-west"]
    static let delays: [RegionPair: Duration] = RegionTopology.threeRegionDefault().latency.oneWay

    let clock: ManualClock
    let network: SteppedRegionNetwork
    let regions: [String]
    let keyRing: TokenKeyRing
    let configuration: GlobalStateConfiguration
    let metrics: MetricsRegistry
    let states: [String: GlobalRegionState]
    let nodes: [String: [GlobalStateNode]]

    init(
        regions: [String] = GlobalStateCluster.regions, delays: [RegionPair: Duration] = GlobalStateCluster.delays, nodesPerRegion: Int = 1,
        configuration: GlobalStateConfiguration = GlobalStateConfiguration()
    ) throws {
        let clock = ManualClock()
        let network = SteppedRegionNetwork(clock: clock, delays: delays)
        let keyRing = try TokenKeyRing.generated()
        let metrics = MetricsRegistry()
        let logger = Logger(label: "global-state-cluster", sink: .discarding)

        var states: [String: GlobalRegionState] = [:]
        var nodes: [String: [GlobalStateNode]] = [:]
        for region in regions {
            let state = try GlobalRegionState(
                region: region, regions: regions, configuration: configuration, clock: clock, metrics: metrics, logger: logger)
            states[region] = state
            for _ in 0..<nodesPerRegion {
                let node = try GlobalStateNode(
                    state: state, configuration: configuration, transport: network, keyRing: keyRing, clock: clock, metrics: metrics,
                    logger: logger)
                nodes[region, default: []].append(node)
                network.attach(region) { request in
                    await node.handler.respond(to: request) ?? HTTPResponse(status: 404)
                }
            }
        }

        self.clock = clock
        self.network = network
        self.regions = regions
        self.keyRing = keyRing
        self.configuration = configuration
        self.metrics = metrics
        self.states = states
        self.nodes = nodes
    }

    func node(_ region: String, _ index: Int = 0) -> GlobalStateNode {
        nodes[region]![index]
    }

    func registers(_ region: String) -> GlobalRegisterStore {
        states[region]!.registers
    }

    func counters(_ region: String) -> RegionRateLimitCounters {
        states[region]!.counters
    }

    func peers(of region: String) -> [String] {
        regions.filter { $0 != region }
    }

    var now: Int64 { clock.nowMilliseconds() }

    // MARK: Writes and loops

    /// Writes a register at `region`, as `PUT /v1/registers/{name}` does,
    /// and starts the push to every peer, as the push loop would.
    @discardableResult
    func write(_ name: String, _ value: JSONValue, at region: String) throws -> GlobalRegisterEntry {
        let entry = try registers(region).write(name, value: value)
        schedulePushes(from: region)
        return entry
    }

    /// Starts a push from `region` to each peer now, during the next `run`.
    func schedulePushes(from region: String) {
        let replicator = node(region).replicator
        for peer in peers(of: region) {
            network.spawn { await replicator.pushUnacknowledged(to: peer) }
        }
    }

    /// Runs each region's anti-entropy round every interval, starting at
    /// `firstRound` plus the region's offset (default: rounds spread evenly
    /// over the interval, so regions do not exchange in lockstep).
    func scheduleAntiEntropy(firstRound: Int64? = nil, offsets: [String: Duration]? = nil) {
        let interval = configuration.replication.antiEntropyInterval
        let start = firstRound ?? now
        for (index, region) in regions.enumerated() {
            let offset = offsets?[region] ?? interval * (Double(index) / Double(regions.count))
            let replicator = node(region).replicator
            for peer in peers(of: region) {
                network.every(interval, startingAt: start + offset.wholeMilliseconds) {
                    await replicator.exchangeDigest(with: peer)
                }
            }
        }
    }

    /// Runs each region's count exchange with every peer every count-exchange interval from now.
    func scheduleCountExchanges() {
        let interval = configuration.rateLimits.countExchangeInterval
        for region in regions {
            let limiter = node(region).rateLimiter
            for peer in peers(of: region) {
                network.every(interval, startingAt: now) { await limiter.exchangeCounts(with: peer) }
            }
        }
    }

    /// Exchanges counts once between every pair of regions, now.
    func exchangeCountsOnce() async {
        for region in regions {
            let limiter = node(region).rateLimiter
            for peer in peers(of: region) {
                network.spawn { await limiter.exchangeCounts(with: peer) }
            }
        }
        await network.run(for: network.maximumDelay * 2)
    }

    func run(for duration: Duration) async {
        await network.run(for: duration)
    }

    func run(until time: Int64) async {
        await network.run(until: time)
    }

    // MARK: Checks

    /// Returns the register at every region; equal values mean converged.
    func entries(_ name: String) -> [String: GlobalRegisterEntry?] {
        Dictionary(uniqueKeysWithValues: regions.map { ($0, registers($0).entry(name)) })
    }
}
