/// The action a region takes on a reservation that its local lease chunk
/// cannot cover while the linearizable store cannot be reached.
public enum QuotaFailMode: String, Sendable, Equatable, CaseIterable {
    /// Deny the reservation. The default, because a usage quota must never be overspent.
    case closed
    /// Admit it anyway, up to `QuotaPolicy.failOpenBound` tokens per region and
    /// period, and report the tokens so admitted in the audit.
    case open
}

/// One tenant's quota: how many tokens it may consume per period, and what a
/// region does when the store is unreachable.
///
/// The policy lives in the tenant's quota record in the linearizable store,
/// so every region applies the same one. A region learns a changed policy
/// with its next store round trip for that tenant.
public struct QuotaPolicy: Sendable, Equatable {
    /// The largest accepted `limit` and `failOpenBound`: 10^15 tokens.
    public static let maximumTokens: Int64 = 1_000_000_000_000_000
    /// The longest accepted period: 366 days.
    public static let maximumPeriodSeconds: Int64 = 366 * 86_400

    /// Tokens the tenant may consume per period, from 1 to `maximumTokens`.
    public var limit: Int64
    /// The period's length in seconds. Periods are aligned to the Unix
    /// epoch: period n covers `[n × periodSeconds, (n + 1) × periodSeconds)`.
    public var periodSeconds: Int64
    public var failMode: QuotaFailMode
    /// In `open` mode, the most tokens each region may admit without the
    /// store in one period. Must be 0 in `closed` mode.
    public var failOpenBound: Int64

    public init(limit: Int64, periodSeconds: Int64, failMode: QuotaFailMode = .closed, failOpenBound: Int64 = 0) {
        self.limit = limit
        self.periodSeconds = periodSeconds
        self.failMode = failMode
        self.failOpenBound = failOpenBound
    }

    /// Throws `invalidPolicy` naming the first field out of range.
    public func validate() throws(QuotaError) {
        guard (1...Self.maximumTokens).contains(limit) else {
            throw QuotaError(
                .invalidPolicy, field: "limit", "limit \(limit) is out of range: it must be from 1 to \(Self.maximumTokens) tokens")
        }
        guard (1...Self.maximumPeriodSeconds).contains(periodSeconds) else {
            throw QuotaError(
                .invalidPolicy, field: "periodSeconds",
                "periodSeconds \(periodSeconds) is out of range: it must be from 1 to \(Self.maximumPeriodSeconds)")
        }
        guard (0...Self.maximumTokens).contains(failOpenBound) else {
            throw QuotaError(
                .invalidPolicy, field: "failOpenBound",
                "failOpenBound \(failOpenBound) is out of range: it must be from 0 to \(Self.maximumTokens) tokens")
        }
        guard failMode == .open || failOpenBound == 0 else {
            throw QuotaError(
                .invalidPolicy, field: "failOpenBound",
                "failOpenBound \(failOpenBound) applies only when failMode is open; send 0 or omit it with failMode closed")
        }
    }

    /// Returns the index of the period that contains `milliseconds` (since the Unix epoch).
    public func period(atMilliseconds milliseconds: Int64) -> Int64 {
        let length = periodSeconds * 1000
        return milliseconds >= 0 ? milliseconds / length : (milliseconds - length + 1) / length
    }

    /// Returns the start of period `index`, in milliseconds since the Unix epoch.
    public func periodStartMilliseconds(_ index: Int64) -> Int64 {
        index * periodSeconds * 1000
    }
}
