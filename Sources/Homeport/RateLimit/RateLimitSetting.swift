/// A tenant's rate limit: at most `requestsPerWindow` admitted requests in
/// each fixed window of `windowSeconds`, counted across all regions.
///
/// Stored as the global register `rate-limit:<tenant>` with the value
/// `{"requestsPerWindow": N, "windowSeconds": S}`, so a setting written at
/// any region reaches every region the way router weights do.
public struct RateLimitSetting: Sendable, Equatable {
    /// 0 rejects every request of the tenant.
    public static let requestsPerWindowRange: ClosedRange<Int64> = 0...1_000_000_000
    /// From one second to one day.
    public static let windowSecondsRange: ClosedRange<Int64> = 1...86_400
    /// Register names starting with this are rate-limit settings, written
    /// only through the rate-limit route.
    public static let registerPrefix = "rate-limit:"

    public var requestsPerWindow: Int64
    public var windowSeconds: Int64

    /// - Precondition: both values are inside their ranges.
    public init(requestsPerWindow: Int64, windowSeconds: Int64) {
        precondition(Self.requestsPerWindowRange.contains(requestsPerWindow), "requestsPerWindow \(requestsPerWindow) is out of range")
        precondition(Self.windowSecondsRange.contains(windowSeconds), "windowSeconds \(windowSeconds) is out of range")
        self.requestsPerWindow = requestsPerWindow
        self.windowSeconds = windowSeconds
    }

    /// Decodes `{"requestsPerWindow": N, "windowSeconds": S}`, rejecting
    /// other fields and out-of-range values.
    /// - Throws: `RequestError` naming the field at fault.
    public init(reading object: JSONObjectReader) throws(RequestError) {
        var object = object
        let requests = try object.integer("requestsPerWindow", in: Self.requestsPerWindowRange)
        let seconds = try object.integer("windowSeconds", in: Self.windowSecondsRange)
        try object.finish()
        self.init(requestsPerWindow: requests, windowSeconds: seconds)
    }

    public var json: JSONValue {
        .object(["requestsPerWindow": .integer(requestsPerWindow), "windowSeconds": .integer(windowSeconds)])
    }

    public var windowMilliseconds: Int64 { windowSeconds * 1000 }

    public static func registerName(for tenant: TenantID) -> String {
        registerPrefix + tenant.rawValue
    }
}
