/// The tokens a region asked for recently, in a sliding window of one-second
/// buckets: the demand that sizes its next lease chunk.
struct DemandWindow: Sendable, Equatable {
    /// Tokens per bucket, indexed by second modulo the bucket count.
    private var buckets: [Int64]
    /// The second each bucket counts, so a stale bucket reads as empty.
    private var bucketSeconds: [Int64]
    /// The first second with a recorded request, for a window that is still filling.
    private var firstSecond: Int64?

    init(seconds: Int) {
        buckets = Array(repeating: 0, count: max(1, seconds))
        bucketSeconds = Array(repeating: Int64.min, count: max(1, seconds))
    }

    mutating func record(tokens: Int64, atMilliseconds now: Int64) {
        let second = now / 1000
        let index = Int(second % Int64(buckets.count))
        if bucketSeconds[index] != second {
            bucketSeconds[index] = second
            buckets[index] = 0
        }
        buckets[index] = buckets[index].saturatingAdding(tokens)
        if firstSecond == nil { firstSecond = second }
    }

    /// Tokens per second over the window, or over the time since the first
    /// request when that is shorter (at least one second).
    func tokensPerSecond(atMilliseconds now: Int64) -> Double {
        guard let firstSecond else { return 0 }
        let second = now / 1000
        let oldest = second - Int64(buckets.count) + 1
        var total: Double = 0
        for index in buckets.indices where bucketSeconds[index] >= oldest && bucketSeconds[index] <= second {
            total += Double(buckets[index])
        }
        let span = min(Int64(buckets.count), max(1, second - firstSecond + 1))
        return total / Double(span)
    }
}

/// The sizing rule of lease chunks: enough for `horizon` at the region's
/// recent demand, but never more than `maximumShare` of the free budget
/// unless the request at hand needs more.
public struct ChunkSizing: Sendable, Equatable {
    /// The time a chunk should last at the region's recent rate. 5 s by default.
    public var horizon: Duration = .seconds(5)
    /// The smallest chunk worth a store round trip, in tokens. 1,000 by default.
    public var minimumChunkTokens: Int64 = 1000
    /// The largest share of the free budget one chunk may take, from 0 to 1.
    /// 0.25 by default, so three other regions can each still take as much.
    public var maximumShare: Double = 0.25
    /// A region takes its next chunk in the background once its free tokens
    /// fall below this fraction of its target chunk. 0.25 by default.
    public var refillFraction: Double = 0.25
    /// The length of the demand window, in seconds. 10 by default.
    public var demandWindowSeconds: Int = 10

    public init() {}

    public func validate() throws(ConfigurationError) {
        guard horizon > .zero else {
            throw ConfigurationError(field: "quota.chunkSizing.horizon", detail: "the horizon must be positive, got \(horizon)")
        }
        guard minimumChunkTokens >= 1 else {
            throw ConfigurationError(
                field: "quota.chunkSizing.minimumChunkTokens",
                detail: "the minimum chunk must be at least 1 token, got \(minimumChunkTokens)")
        }
        guard maximumShare > 0, maximumShare <= 1 else {
            throw ConfigurationError(
                field: "quota.chunkSizing.maximumShare", detail: "the maximum share must be above 0 and at most 1, got \(maximumShare)")
        }
        guard refillFraction >= 0, refillFraction < 1 else {
            throw ConfigurationError(
                field: "quota.chunkSizing.refillFraction", detail: "the refill fraction must be from 0 to below 1, got \(refillFraction)")
        }
        guard (1...3600).contains(demandWindowSeconds) else {
            throw ConfigurationError(
                field: "quota.chunkSizing.demandWindowSeconds",
                detail: "the demand window must be from 1 to 3600 seconds, got \(demandWindowSeconds)")
        }
    }

    /// Returns the chunk a region should hold at `rate` tokens per second:
    /// the horizon's worth, and at least the minimum chunk.
    func target(rate: Double) -> Int64 {
        let byDemand = rate * horizon.secondsValue
        guard byDemand < Double(QuotaPolicy.maximumTokens) else { return QuotaPolicy.maximumTokens }
        return max(minimumChunkTokens, Int64(byDemand.rounded(.up)))
    }

    /// Returns the tokens to take from the free budget.
    ///
    /// - Parameters:
    ///   - need: tokens the request at hand lacks; 0 for a background refill.
    ///   - available: the region's free chunk tokens now.
    ///   - free: the budget no region holds.
    /// - Returns: at least `need` and at most `free`, or 0 when `free` cannot
    ///   cover `need`: taking budget that the request cannot use would only
    ///   keep it from other regions.
    func extra(need: Int64, available: Int64, rate: Double, free: Int64) -> Int64 {
        guard free >= need, free > 0 else { return 0 }

        let desired = max(need, target(rate: rate) - available)
        let share = Int64((Double(free) * maximumShare).rounded(.down))
        let cap = max(need, minimumChunkTokens, share)
        return max(0, min(desired, cap, free))
    }
}

extension Int64 {
    /// Returns the sum, or `Int64.max` where it would overflow, for totals
    /// that clients can drive with large amounts.
    func saturatingAdding(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? .max : sum
    }
}
