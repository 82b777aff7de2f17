import Synchronization

/// The rate-limit counters of one region, shared by all its nodes: for each
/// live window, a grow-only counter with this region's admitted requests and
/// the last counts received from the other regions.
///
/// Admission checks the sum and increments this region's entry in one atomic
/// step, so the nodes of a region act as one counter. That is what keeps the
/// over-admission bound independent of the number of nodes: a region's
/// admissions are limited by everything the region has counted, whichever
/// node counted it, and the other regions see one count per region.
///
/// Bounded: windows are removed once they end, and a merge adds no window
/// past `maximumWindows`. Local admissions always count, because their
/// windows are bounded by the tenants that have a setting (two lengths at
/// most per tenant while a setting changes).
///
/// NOTE: the counters live in memory, so only nodes in one process can share
/// them. Nodes of a region in separate processes need them in the region's
/// fast store (in Redis, the check and increment as one Lua script).
public final class RegionRateLimitCounters: Sendable {
    public struct Admission: Sendable, Equatable {
        public var admitted: Bool
        /// The window's sum over all regions after this request, in this region's view.
        public var total: Int64
    }

    public let region: String
    public let maximumWindows: Int
    /// Counts per window, per region.
    private let windows = Mutex<[RateLimitWindow: [String: Int64]]>([:])

    public init(region: String, maximumWindows: Int = 65_536) {
        self.region = region
        self.maximumWindows = maximumWindows
    }

    /// Admits one request when the window's sum is below `limit`, counting it
    /// for this region; otherwise counts nothing.
    public func admit(_ window: RateLimitWindow, limit: Int64) -> Admission {
        windows.withLock { windows in
            var counts = windows[window] ?? [:]
            let total = counts.values.reduce(0, +)
            guard total < limit else { return Admission(admitted: false, total: total) }
            counts[region, default: 0] += 1
            windows[window] = counts
            return Admission(admitted: true, total: total + 1)
        }
    }

    /// Merges counts received from another region, entry by entry by
    /// maximum. Windows that ended before `nowMilliseconds` are ignored.
    ///
    /// - Returns: how many region entries went up, and how many windows were
    ///   dropped because the store was full.
    @discardableResult
    public func merge(_ received: [RateLimitWindowCounts], nowMilliseconds: Int64) -> (raised: Int, dropped: Int) {
        windows.withLock { windows in
            var raised = 0
            var dropped = 0
            for incoming in received where incoming.window.endMilliseconds > nowMilliseconds {
                guard windows[incoming.window] != nil || windows.count < maximumWindows else {
                    dropped += 1
                    continue
                }
                var counts = windows[incoming.window] ?? [:]
                for (region, count) in incoming.counts where count > counts[region, default: 0] {
                    counts[region] = count
                    raised += 1
                }
                windows[incoming.window] = counts
            }
            return (raised, dropped)
        }
    }

    /// Returns every window that has not ended, with its counts.
    public func liveCounts(nowMilliseconds: Int64) -> [RateLimitWindowCounts] {
        windows.withLock { windows in
            windows.compactMap { window, counts in
                window.endMilliseconds > nowMilliseconds ? RateLimitWindowCounts(window: window, counts: counts) : nil
            }
        }
    }

    /// Removes the windows that ended at or before `nowMilliseconds` and returns how many.
    @discardableResult
    public func removeEndedWindows(nowMilliseconds: Int64) -> Int {
        windows.withLock { windows in
            let before = windows.count
            windows = windows.filter { $0.key.endMilliseconds > nowMilliseconds }
            return before - windows.count
        }
    }

    /// Returns the counts of one window, by region, or none when the window is unknown.
    public func counts(of window: RateLimitWindow) -> [String: Int64] {
        windows.withLock { $0[window] ?? [:] }
    }

    public var windowCount: Int { windows.withLock { $0.count } }
}
