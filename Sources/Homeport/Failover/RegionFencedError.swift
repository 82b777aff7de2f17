/// A request for a session whose home failed, at the region that took the
/// home over but has no standby copy of the session (the home and its
/// neighbour both failed, or the session was never replicated). Its status
/// is 503: nothing is invented, and the session is unavailable.
public struct SessionUnavailableError: Error, Sendable, Equatable, CustomStringConvertible {
    public let session: SessionID
    public let failedHome: String
    /// The region that took the failed home over, set when it cannot be
    /// reached either (a double failure). Nil when it has no copy of the session.
    public let unreachableNewHome: String?

    public init(session: SessionID, failedHome: String, unreachableNewHome: String? = nil) {
        self.session = session
        self.failedHome = failedHome
        self.unreachableNewHome = unreachableNewHome
    }

    public var description: String {
        if let unreachableNewHome {
            return
                "session \(session) was homed at \(failedHome), which failed, and \(unreachableNewHome), which took it over, cannot be reached either; it is unavailable until one of them returns"
        }
        return
            "session \(session) was homed at \(failedHome), which failed, and no region holds a copy of it; it is unavailable until \(failedHome) returns"
    }
}

/// A request for a home session at a region that does not hold a valid lease
/// in the linearizable store. Its status is 503, because the region has
/// fenced itself so that it cannot accept writes that a takeover would not see.
public struct RegionFencedError: Error, Sendable, Equatable, CustomStringConvertible {
    public let region: String

    public init(region: String) {
        self.region = region
    }

    public var description: String {
        "region \(region) holds no valid lease in the linearizable store, so it serves none of its home sessions until it renews; retry later"
    }
}
