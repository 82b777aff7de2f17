import Synchronization

/// The calls from one region's node to another's: forwarding a session request to its
/// home, shipping replication batches and reconcile tails.
///
/// The server uses `InterRegionClient` (HTTP on loopback with the latency
/// matrix); the fault-injection harness uses a simulated network that calls
/// the destination node's handler directly.
public protocol InterRegionTransport: Sendable {
    /// Sends `request` from `source` to the node of `destination` and returns
    /// its response, with the one-way delay the response paid on its way
    /// back, so a caller can tell when the destination acted.
    ///
    /// - Throws: `ForwardingError.unknownRegion` when `destination` is not in
    ///   the topology, `.homeUnreachable` when the connection fails,
    ///   `.timedOut` when the destination does not respond in time. A request
    ///   that failed may still have been applied at the destination, so
    ///   callers retry with the same idempotency key.
    func exchange(
        _ request: HTTPRequest, from source: String, to destination: String, extraHeaders: [(String, String)]
    ) async throws(ForwardingError) -> (response: HTTPResponse, inboundDelay: Duration)
}

extension InterRegionTransport {
    /// Sends like `exchange` and returns the response alone.
    public func send(
        _ request: HTTPRequest, from source: String, to destination: String, extraHeaders: [(String, String)]
    ) async throws(ForwardingError) -> HTTPResponse {
        try await exchange(request, from: source, to: destination, extraHeaders: extraHeaders).response
    }
}

/// Calls from one region's node to another's over HTTP.
///
/// Every call pays the latency matrix's one-way delay (with jitter) on the way
/// out and again on the way back, because all regions share one machine.
public final class InterRegionClient: InterRegionTransport {
    /// Response headers relayed from the home back to the caller.
    static let relayedHeaders = [
        "Content-Type", "Homeport-Route", "Homeport-Served-By", "Homeport-Served-From", "Homeport-Replication-Gap",
        "Homeport-Request-Id", "Idempotent-Replayed",
        "WWW-Authenticate",
    ]

    private let topology: RegionTopology
    /// The address of each region's node, updated when a node binds an ephemeral port.
    private let endpoints: Mutex<[String: RegionEndpoint]>
    private let http: HTTPClient
    private let clock: any WallClock

    /// - Parameter timeout: how long one socket read or write of a forward may wait.
    public init(topology: RegionTopology, clock: any WallClock, timeout: Duration = .seconds(10)) {
        self.topology = topology
        self.clock = clock
        self.http = HTTPClient(timeout: timeout)
        self.endpoints = Mutex(Dictionary(uniqueKeysWithValues: topology.regions.map { ($0.name, $0) }))
    }

    /// Records the port a region's node bound, for a node started on port 0.
    public func setPort(_ port: UInt16, of region: String) {
        endpoints.withLock { $0[region]?.port = port }
    }

    public func endpoint(of region: String) -> RegionEndpoint? {
        endpoints.withLock { $0[region] }
    }

    public func exchange(
        _ request: HTTPRequest, from source: String, to destination: String, extraHeaders: [(String, String)]
    ) async throws(ForwardingError) -> (response: HTTPResponse, inboundDelay: Duration) {
        guard let endpoint = endpoint(of: destination) else {
            throw ForwardingError(
                .unknownRegion, region: destination,
                "the routing token names home region \"\(destination)\", which is not one of \(topology.regionNames)")
        }

        var outgoing = HTTPRequest(method: request.method, path: request.path, query: request.query, body: request.body)
        for (name, value) in request.headers where Self.isForwardedRequestHeader(name) {
            outgoing.headers[name] = value
        }
        for (name, value) in extraHeaders {
            outgoing.headers[name.lowercased()] = value
        }

        var generator = SystemRandomNumberGenerator()
        let outbound = topology.latency.sampleDelay(from: source, to: destination, using: &generator)
        let inbound = topology.latency.sampleDelay(from: destination, to: source, using: &generator)

        do {
            try await clock.sleep(for: outbound)
        } catch {
            throw ForwardingError(.timedOut, region: destination, "the forward to \"\(destination)\" was cancelled before it was sent")
        }

        let response: HTTPResponse
        do {
            response = try await http.send(outgoing, host: endpoint.host, port: endpoint.port)
        } catch {
            switch error.code {
            case .timedOut:
                throw ForwardingError(
                    .timedOut, region: destination,
                    "the home region \"\(destination)\" did not answer in time; retry with the same idempotency key")
            case .invalidAddress, .connectFailed, .connectionClosed, .malformedResponse:
                throw ForwardingError(
                    .homeUnreachable, region: destination,
                    "the home region \"\(destination)\" could not be reached (\(error.code.rawValue)); retry with the same idempotency key")
            }
        }

        // The response pays the way back even if the caller has gone, because it was applied.
        try? await clock.sleep(for: inbound)
        let relayed = Self.relayedHeaders.compactMap { name in response.header(name).map { (name: name, value: $0) } }
        return (HTTPResponse(status: response.status, headers: relayed, body: response.body), inbound)
    }

    private static func isForwardedRequestHeader(_ lowercasedName: String) -> Bool {
        switch lowercasedName {
        case "content-type", "homeport-route", "homeport-request-id", "idempotency-key", "accept": true
        default: false
        }
    }
}
