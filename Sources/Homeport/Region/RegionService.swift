/// A component that serves some routes of a region's API beside the session
/// routes: quotas, billing, global registers and rate limits. A region's node
/// offers every request to its services before its own routes.
public protocol RegionService: Sendable {
    /// The `kind` label of the service's requests in the metrics, such as `usage_quota`.
    var kind: String { get }

    /// Returns the response to a request on one of the service's routes, or
    /// nil when the path is not one of them.
    ///
    /// - Throws: a typed error that `ProblemDetails.from` maps to a status
    ///   (a `RequestError` for bad input naming the field).
    func respond(to request: HTTPRequest) async throws -> HTTPResponse?

    /// Starts the service's background work (flushes, exchanges, lease
    /// renewals), if any, once it is ready to take requests.
    func start() async

    /// Stops the background work; a graceful stop may flush first.
    func stop() async
}

extension RegionService {
    public func start() async {}
    public func stop() async {}
}
