/// One fixed rate-limit window of one tenant. Windows are aligned to the
/// Unix epoch, so every region computes the same window for the same time.
///
/// The window length is part of the key: when a tenant's `windowSeconds`
/// changes, counting starts afresh in windows of the new length.
public struct RateLimitWindow: Hashable, Sendable, CustomStringConvertible {
    public var tenant: TenantID
    public var windowSeconds: Int64
    /// Milliseconds since the Unix epoch, a multiple of `windowSeconds × 1000`.
    public var startMilliseconds: Int64

    public init(tenant: TenantID, windowSeconds: Int64, startMilliseconds: Int64) {
        self.tenant = tenant
        self.windowSeconds = windowSeconds
        self.startMilliseconds = startMilliseconds
    }

    /// Returns the window of `windowSeconds` that contains `nowMilliseconds`.
    public static func containing(_ nowMilliseconds: Int64, tenant: TenantID, windowSeconds: Int64) -> RateLimitWindow {
        let length = windowSeconds * 1000
        let start = nowMilliseconds - ((nowMilliseconds % length) + length) % length
        return RateLimitWindow(tenant: tenant, windowSeconds: windowSeconds, startMilliseconds: start)
    }

    /// The first millisecond after the window.
    public var endMilliseconds: Int64 { startMilliseconds + windowSeconds * 1000 }

    public var description: String { "\(tenant)/\(windowSeconds)s@\(startMilliseconds)" }
}

/// A grow-only counter of one window: admitted requests per region.
///
/// Each region increments only its own entry. Copies merge by taking the
/// maximum of each entry, so merges in any order and repeated merges agree.
/// The sum never goes down.
public struct RateLimitWindowCounts: Sendable, Equatable {
    public var window: RateLimitWindow
    /// Admitted requests, by the region that admitted them.
    public var counts: [String: Int64]

    public init(window: RateLimitWindow, counts: [String: Int64]) {
        self.window = window
        self.counts = counts
    }

    public var total: Int64 { counts.values.reduce(0, +) }
}
