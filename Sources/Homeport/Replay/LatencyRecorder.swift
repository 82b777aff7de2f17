import Synchronization

/// The replay operation a sample belongs to, and how it was served.
public struct OperationKey: Hashable, Sendable, Comparable {
    public var operation: String
    /// `local` when the entry region served it from the home store,
    /// `forwarded` when the home did, `standby` when the entry region served it
    /// from its standby copy.
    public var path: String

    public static func < (lhs: OperationKey, rhs: OperationKey) -> Bool {
        (lhs.operation, lhs.path) < (rhs.operation, rhs.path)
    }
}

/// Latency samples and error counts of a replay, safe to record from many tasks.
public final class LatencyRecorder: Sendable {
    private struct State {
        var samples: [OperationKey: [Double]] = [:]
        /// The same samples by where the request entered: `home-entry` at
        /// the region that created the session, `roaming-entry` elsewhere.
        var samplesByEntry: [OperationKey: [Double]] = [:]
        /// Forwarded samples by (entry region, home region), for the per-pair bound.
        var forwardedByPair: [RegionPair: [Double]] = [:]
        /// Entries the home had reported beyond a standby answer's copy.
        var standbyEntriesBehind: [Double] = []
        var standbyGaps = 0
        var firstRehomeSeconds: Double?
        var replicationGapResponses = 0
        var errors: [String: Int] = [:]
        var retries = 0
        var firstErrors: [String] = []
    }

    private let state = Mutex(State())

    public init() {}

    /// Records one successful call; `milliseconds` is the client-observed
    /// latency. `homeEntry` is true when the request entered at the region
    /// that created the session.
    public func record(
        _ operation: String, entry: String, servedBy: String, fromStandby: Bool = false, homeEntry: Bool = true,
        milliseconds: Double
    ) {
        let path: String
        if fromStandby {
            path = "standby"
        } else {
            path = servedBy == entry ? "local" : "forwarded"
        }
        state.withLock { state in
            state.samples[OperationKey(operation: operation, path: path), default: []].append(milliseconds)
            let entryPath = homeEntry ? "home-entry" : "roaming-entry"
            state.samplesByEntry[OperationKey(operation: operation, path: entryPath), default: []].append(milliseconds)
            if path == "forwarded" {
                state.forwardedByPair[RegionPair(entry, servedBy), default: []].append(milliseconds)
            }
        }
    }

    public func recordError(_ operation: String, message: String) {
        state.withLock { state in
            state.errors[operation, default: 0] += 1
            if state.firstErrors.count < 10 {
                state.firstErrors.append("\(operation): \(message)")
            }
        }
    }

    /// Records how stale a standby response was, from its `standby` object.
    public func recordStandbyStaleness(_ standby: JSONValue?) {
        let applied = standby?["appliedSeq"]?.integerValue ?? 0
        let reported = standby?["homeLastSeq"]?.integerValue ?? applied
        let gap = standby?["replicationGap"]?.boolValue == true
        state.withLock { state in
            state.standbyEntriesBehind.append(Double(max(0, reported - applied)))
            if gap { state.standbyGaps += 1 }
        }
    }

    public var standbyEntriesBehind: [Double] { state.withLock { $0.standbyEntriesBehind } }
    public var standbyGaps: Int { state.withLock { $0.standbyGaps } }

    /// Records a response that re-homed a session, `seconds` after the replay started.
    public func recordRehome(atSeconds seconds: Double) {
        state.withLock { state in
            if state.firstRehomeSeconds == nil { state.firstRehomeSeconds = seconds }
        }
    }

    public func recordReplicationGap() {
        state.withLock { $0.replicationGapResponses += 1 }
    }

    public var firstRehomeSeconds: Double? { state.withLock { $0.firstRehomeSeconds } }
    public var replicationGapResponses: Int { state.withLock { $0.replicationGapResponses } }

    public func recordRetry() {
        state.withLock { $0.retries += 1 }
    }

    public var samples: [OperationKey: [Double]] { state.withLock { $0.samples } }
    /// Samples keyed by operation and entry path (`home-entry` or `roaming-entry`).
    public var samplesByEntry: [OperationKey: [Double]] { state.withLock { $0.samplesByEntry } }
    public var forwardedByPair: [RegionPair: [Double]] { state.withLock { $0.forwardedByPair } }
    public var errors: [String: Int] { state.withLock { $0.errors } }
    public var retries: Int { state.withLock { $0.retries } }
    public var firstErrors: [String] { state.withLock { $0.firstErrors } }
}

/// Count and nearest-rank percentiles of a set of latency samples, in milliseconds.
public struct LatencySummary: Sendable, Equatable {
    public var count: Int
    public var p50: Double
    public var p95: Double
    public var p99: Double
    public var p999: Double
    public var maximum: Double

    public init(_ samples: [Double]) {
        let sorted = samples.sorted()
        count = sorted.count
        p50 = Self.percentile(sorted, 0.50)
        p95 = Self.percentile(sorted, 0.95)
        p99 = Self.percentile(sorted, 0.99)
        p999 = Self.percentile(sorted, 0.999)
        maximum = sorted.last ?? 0
    }

    /// Returns the nearest-rank percentile of sorted samples, or 0 for none.
    public static func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((fraction * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }

    public var json: JSONValue {
        .object([
            "count": .integer(Int64(count)),
            "p50Milliseconds": .number(p50),
            "p95Milliseconds": .number(p95),
            "p99Milliseconds": .number(p99),
            "p999Milliseconds": .number(p999),
            "maxMilliseconds": .number(maximum),
        ])
    }
}
