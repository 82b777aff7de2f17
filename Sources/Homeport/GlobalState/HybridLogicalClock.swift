import Synchronization

/// A hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014):
/// timestamps that stay close to wall time and still respect causality.
///
/// Guarantees:
/// - Every timestamp this clock returns is greater than every timestamp it
///   returned before, even when the wall clock steps backwards.
/// - After `update(received:)`, every later timestamp is greater than the
///   received one, so a write made after seeing another region's write is
///   ordered after it.
/// - The physical part never trails the wall clock, and runs ahead of it only
///   by what a received timestamp carried (at most `maximumForwardDrift`) or
///   by a millisecond per 2^32 events within one millisecond.
public final class HybridLogicalClock: Sendable {
    /// How far ahead of this region's wall clock a received timestamp may be
    /// by default. It bounds the damage of one region with a wrong clock: its
    /// writes are rejected instead of dragging every region's clock forward.
    public static let defaultMaximumForwardDrift: Duration = .seconds(60)

    public let maximumForwardDrift: Duration
    private let clock: any WallClock
    /// The last timestamp returned or received.
    private let last: Mutex<HybridTimestamp>

    public init(clock: any WallClock, maximumForwardDrift: Duration = defaultMaximumForwardDrift) {
        self.clock = clock
        self.maximumForwardDrift = maximumForwardDrift
        self.last = Mutex(HybridTimestamp(physicalMilliseconds: 0, logical: 0))
    }

    /// The last timestamp returned or received, without advancing the clock.
    public var current: HybridTimestamp { last.withLock { $0 } }

    /// Returns the timestamp of a local event.
    public func now() -> HybridTimestamp {
        let wall = clock.nowMilliseconds()
        return last.withLock { last in
            if wall > last.physicalMilliseconds {
                last = HybridTimestamp(physicalMilliseconds: wall, logical: 0)
            } else {
                // The wall clock has not moved past the last reading (same
                // millisecond, a step backwards, or a future time received).
                last = last.incremented()
            }
            return last
        }
    }

    /// Merges a timestamp received from another region and returns the
    /// timestamp of the receive event, which is greater than both the
    /// received one and every one this clock returned before.
    ///
    /// - Throws: `GlobalStateError.clockDrift` when `received` is more than
    ///   `maximumForwardDrift` ahead of the wall clock; the clock is unchanged.
    @discardableResult
    public func update(received: HybridTimestamp) throws(GlobalStateError) -> HybridTimestamp {
        let wall = clock.nowMilliseconds()
        let ahead = received.physicalMilliseconds - wall
        guard ahead <= maximumForwardDrift.wholeMilliseconds else {
            throw GlobalStateError(
                .clockDrift, subject: "\(received)",
                "the received timestamp is \(ahead) ms ahead of this region's clock; the limit is \(maximumForwardDrift.wholeMilliseconds) ms, so check the sender's clock"
            )
        }

        return last.withLock { last in
            let physical = max(wall, last.physicalMilliseconds, received.physicalMilliseconds)
            if physical == wall, wall > last.physicalMilliseconds, wall > received.physicalMilliseconds {
                last = HybridTimestamp(physicalMilliseconds: wall, logical: 0)
            } else if last.physicalMilliseconds == received.physicalMilliseconds {
                last = max(last, received).incremented()
            } else if physical == last.physicalMilliseconds {
                last = last.incremented()
            } else {
                last = received.incremented()
            }
            return last
        }
    }
}
