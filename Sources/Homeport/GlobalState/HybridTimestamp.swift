/// A hybrid logical clock reading: wall-clock milliseconds plus a logical
/// counter that orders events within the same millisecond, or while the
/// wall clock lags behind a time already seen.
///
/// Ordered by physical time, then by the logical counter.
public struct HybridTimestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Milliseconds since the Unix epoch: the largest wall time the clock had
    /// seen (locally or in a received timestamp) when the reading was taken.
    public var physicalMilliseconds: Int64
    /// Counts events that share `physicalMilliseconds`; reset to 0 whenever
    /// the physical part moves forward.
    public var logical: UInt32

    public init(physicalMilliseconds: Int64, logical: UInt32) {
        self.physicalMilliseconds = physicalMilliseconds
        self.logical = logical
    }

    public static func < (lhs: HybridTimestamp, rhs: HybridTimestamp) -> Bool {
        (lhs.physicalMilliseconds, lhs.logical) < (rhs.physicalMilliseconds, rhs.logical)
    }

    public var description: String { "\(physicalMilliseconds).\(logical)" }

    /// Returns the next timestamp after this one at the same physical time. A
    /// full logical counter carries into the physical part, which keeps the
    /// order total at the cost of running one millisecond ahead.
    func incremented() -> HybridTimestamp {
        guard logical < UInt32.max else {
            return HybridTimestamp(physicalMilliseconds: physicalMilliseconds + 1, logical: 0)
        }
        return HybridTimestamp(physicalMilliseconds: physicalMilliseconds, logical: logical + 1)
    }
}

/// The version of a global register's value: the hybrid logical clock
/// reading of the write and the region that wrote it.
///
/// Stamps are totally ordered: by timestamp, then by region name, so two
/// regions that write in the same millisecond with the same logical counter
/// still agree on the winner. Last writer wins means the greatest stamp wins.
public struct RegisterStamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var timestamp: HybridTimestamp
    public var region: String

    public init(timestamp: HybridTimestamp, region: String) {
        self.timestamp = timestamp
        self.region = region
    }

    public static func < (lhs: RegisterStamp, rhs: RegisterStamp) -> Bool {
        if lhs.timestamp != rhs.timestamp { return lhs.timestamp < rhs.timestamp }
        return lhs.region < rhs.region
    }

    public var description: String { "\(timestamp)@\(region)" }
}
