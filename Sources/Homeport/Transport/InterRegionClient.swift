import Foundation
import Synchronization
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Calls from one region's node to another's: today, forwarding a session
/// request to its home.
///
/// Every call pays the latency matrix's one-way delay (with jitter) on the way
/// out and again on the way back, because all regions share one machine.
public final class InterRegionClient: Sendable {
    /// Response headers relayed from the home back to the caller.
    static let relayedHeaders = [
        "Content-Type", "Homeport-Route", "Homeport-Served-By", "Homeport-Request-Id", "Idempotent-Replayed",
        "WWW-Authenticate",
    ]

    private let topology: RegionTopology
    /// Where each region's node listens; updated when a node binds an ephemeral port.
    private let endpoints: Mutex<[String: RegionEndpoint]>
    private let session: URLSession
    private let clock: any WallClock
    private let timeout: Duration

    /// - Parameters:
    ///   - timeout: how long one forward may take, delays included, before it
    ///     fails with `timedOut`.
    ///   - maximumConnectionsPerRegion: keep-alive connections kept to each region.
    public init(topology: RegionTopology, clock: any WallClock, timeout: Duration = .seconds(10), maximumConnectionsPerRegion: Int = 64) {
        self.topology = topology
        self.clock = clock
        self.timeout = timeout
        self.endpoints = Mutex(Dictionary(uniqueKeysWithValues: topology.regions.map { ($0.name, $0) }))
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = maximumConnectionsPerRegion
        configuration.timeoutIntervalForRequest = timeout.secondsValue
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.urlCache = nil
        configuration.httpCookieStorage = nil
        self.session = URLSession(configuration: configuration)
    }

    /// Records the port a region's node bound, for a node started on port 0.
    public func setPort(_ port: UInt16, of region: String) {
        endpoints.withLock { $0[region]?.port = port }
    }

    public func endpoint(of region: String) -> RegionEndpoint? {
        endpoints.withLock { $0[region] }
    }

    /// Sends `request` from `source` to the node of `destination` and returns its response.
    ///
    /// - Throws: `ForwardingError.unknownRegion` when `destination` is not in the
    ///   topology, `.homeUnreachable` when the connection fails, `.timedOut`
    ///   after `timeout`. A request that failed may still have been applied at
    ///   the destination, so callers retry with the same idempotency key.
    public func send(
        _ request: HTTPRequest, from source: String, to destination: String, extraHeaders: [(String, String)]
    ) async throws(ForwardingError) -> HTTPResponse {
        guard let endpoint = endpoint(of: destination) else {
            throw ForwardingError(
                .unknownRegion, region: destination,
                "the routing token names home region \"\(destination)\", which is not one of \(topology.regionNames)")
        }
        guard let url = Self.url(endpoint: endpoint, request: request) else {
            throw ForwardingError(.homeUnreachable, region: destination, "cannot build a URL for \(request.path)")
        }

        var urlRequest = URLRequest(url: url)
        urlRequest.httpMethod = request.method
        for (name, value) in request.headers where Self.isForwardedRequestHeader(name) {
            urlRequest.setValue(value, forHTTPHeaderField: name)
        }
        for (name, value) in extraHeaders {
            urlRequest.setValue(value, forHTTPHeaderField: name)
        }
        if !request.body.isEmpty {
            urlRequest.httpBody = Data(request.body)
        }

        var generator = SystemRandomNumberGenerator()
        let outbound = topology.latency.sampleDelay(from: source, to: destination, using: &generator)
        let inbound = topology.latency.sampleDelay(from: destination, to: source, using: &generator)

        do {
            try await clock.sleep(for: outbound)
            let (data, response) = try await session.data(for: urlRequest)
            try await clock.sleep(for: inbound)
            guard let http = response as? HTTPURLResponse else {
                throw ForwardingError(.homeUnreachable, region: destination, "the home region \"\(destination)\" sent a non-HTTP response")
            }
            var headers: [(name: String, value: String)] = []
            for name in Self.relayedHeaders {
                if let value = http.value(forHTTPHeaderField: name) {
                    headers.append((name, value))
                }
            }
            return HTTPResponse(status: http.statusCode, headers: headers, body: Array(data))
        } catch let error as ForwardingError {
            throw error
        } catch let error as URLError where error.code == .timedOut {
            throw ForwardingError(.timedOut, region: destination, "the home region \"\(destination)\" did not answer within \(timeout); retry with the same idempotency key")
        } catch is CancellationError {
            throw ForwardingError(.timedOut, region: destination, "the forward to \"\(destination)\" was cancelled before it was answered")
        } catch {
            throw ForwardingError(
                .homeUnreachable, region: destination,
                "the home region \"\(destination)\" could not be reached (\(error.localizedDescription)); retry with the same idempotency key")
        }
    }

    private static func isForwardedRequestHeader(_ lowercasedName: String) -> Bool {
        switch lowercasedName {
        case "content-type", "homeport-route", "homeport-request-id", "idempotency-key", "accept": true
        default: false
        }
    }

    private static func url(endpoint: RegionEndpoint, request: HTTPRequest) -> URL? {
        var components = URLComponents()
        components.scheme = "http"
        components.host = endpoint.host
        components.port = Int(endpoint.port)
        components.path = request.path
        if !request.query.isEmpty {
            components.queryItems = request.query.sorted { $0.key < $1.key }.map { URLQueryItem(name: $0.key, value: $0.value) }
        }
        return components.url
    }
}
