/// One fault-injection run, derived entirely from its seed: which fault, with
/// or without a data directory, how busy the clients are, and when the fault
/// starts and ends. Time is in ticks of `FaultScenario.tick` on the harness's
/// manual clock.
public struct FaultScenario: Sendable, Equatable, CustomStringConvertible {
    /// The faults the harness drives the regions through. Each happens to
    /// the first region (the home) unless its description names another.
    public enum Kind: String, Sendable, CaseIterable {
        /// The home crashes mid-conversation and restarts later.
        case homeCrash = "home-crash"
        /// The home is cut off from the linearizable store only: it must fence
        /// itself, and its neighbour takes over.
        case storePartition = "store-partition"
        /// The link between the home and its neighbour is cut: lag grows,
        /// nothing is lost.
        case neighbourPartition = "neighbour-partition"
        /// Internal messages are lost, duplicated and delivered late.
        case duplicatedBatches = "duplicated-batches"
        /// The home crashes, and crashes again while it reconciles forward.
        case crashDuringReconcile = "crash-during-reconcile"
        /// The home and its neighbour crash together.
        case doubleFailure = "double-failure"
    }

    /// The length of one tick.
    public static let tick: Duration = .milliseconds(100)

    public var seed: UInt64
    public var kind: Kind
    /// True when every region keeps a session log in a data directory.
    public var durable: Bool
    public var sessionCount: Int
    /// Client requests per tick.
    public var requestsPerTick: Int
    /// The tick at which the fault starts.
    public var faultTick: Int
    /// The tick at which it ends (the crashed region restarts, the partition heals).
    public var recoverTick: Int
    /// Ticks after recovery before the final check.
    public var settleTicks: Int
    /// Loss on every message for the whole run, besides the scenario's fault.
    public var backgroundFaults: SimulatedNetwork.Faults

    /// Derives a scenario from `seed`. Kinds take turns by seed, so any 6
    /// consecutive seeds cover every kind.
    public init(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        func pick(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(random.next() % UInt64(range.count)) }

        self.seed = seed
        kind = Kind.allCases[Int(seed % UInt64(Kind.allCases.count))]
        switch kind {
        case .crashDuringReconcile, .doubleFailure: durable = true
        default: durable = random.next() % 2 == 0
        }
        sessionCount = pick(3...8)
        requestsPerTick = pick(1...4)
        faultTick = pick(10...25)
        // Long enough for the 2 s lease to expire and the neighbour to take over.
        recoverTick = faultTick + pick(35...60)
        settleTicks = 40
        let loss = random.next() % 3 == 0 ? 0.02 : 0
        backgroundFaults = SimulatedNetwork.Faults(requestLoss: loss, responseLoss: loss)
    }

    public var description: String {
        "seed \(seed): \(kind.rawValue), \(durable ? "with" : "without") data dir, \(sessionCount) sessions, \(requestsPerTick) requests per tick, fault at tick \(faultTick), recovery at tick \(recoverTick)"
    }
}
