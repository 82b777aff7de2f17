/// One replay of the benchmark: a mode on a target at one roaming share.
public struct BenchmarkRun: Sendable {
    /// `embedded` or `cluster`.
    public var target: String
    public var mode: BenchmarkMode
    /// Share of follow-up requests that entered at a region other than the
    /// session's home, from 0 to 1.
    public var roamingShare: Double
    /// Client-observed latencies in milliseconds, by operation and entry
    /// path (`home-entry` or `roaming-entry`).
    public var samples: [OperationKey: [Double]]
    public var requests: Int
    public var roamingRequests: Int
    public var errors: Int
    public var lostAcknowledgedTurns: Int
    public var sessionsMismatched: Int
    public var wallSeconds: Double

    public init(target: String, mode: BenchmarkMode, roamingShare: Double, outcome: ReplayOutcome) {
        self.target = target
        self.mode = mode
        self.roamingShare = roamingShare
        self.samples = outcome.recorder.samplesByEntry
        self.requests = outcome.requestsReplayed
        self.roamingRequests = outcome.roamingRequests
        self.errors = outcome.recorder.errors.values.reduce(0, +)
        self.lostAcknowledgedTurns = outcome.lostAcknowledgedTurns
        self.sessionsMismatched = outcome.sessionsMismatched
        self.wallSeconds = outcome.wallSeconds
    }

    /// Returns the samples of `operation` at `entry` (`home-entry`,
    /// `roaming-entry`, or nil for both).
    public func latencies(of operation: String, entry: String?) -> [Double] {
        samples.filter { $0.key.operation == operation && (entry == nil || $0.key.path == entry) }.flatMap(\.value)
    }

    /// The operations recorded, sorted.
    public var operations: [String] { Set(samples.keys.map(\.operation)).sorted() }
}
