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
