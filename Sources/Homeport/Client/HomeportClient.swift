import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A session as a client holds it: its id, tenant, and the latest routing token.
public struct SessionHandle: Sendable, Equatable {
    public var id: String
    public var tenant: String
    /// Replace it with the `Homeport-Route` header of any response that carries one.
    public var token: String
    public var home: String
}

/// A response from a Homeport node: status, the region that served it, and the JSON body.
public struct ClientResponse: Sendable {
    public var status: Int
    /// `Homeport-Served-By`: the region whose store answered.
    public var servedBy: String?
    /// A new routing token, when the response re-homes the session.
    public var routeToken: String?
    public var replayed: Bool
    public var body: JSONValue
}

public enum HomeportClientError: Error, Sendable, CustomStringConvertible {
    /// The node answered with an error status and a problem+json body.
    case problem(status: Int, type: String, detail: String)
    /// No HTTP answer: connection refused, reset or timed out.
    case transport(String)
    /// An answer that is not the JSON the API promises.
    case invalidResponse(String)

    public var description: String {
        switch self {
        case .problem(let status, let type, let detail): "HTTP \(status) \(type): \(detail)"
        case .transport(let detail): "transport failure: \(detail)"
        case .invalidResponse(let detail): "invalid response: \(detail)"
        }
    }

    /// True when nothing reached the server or its answer was lost, so a retry
    /// with the same idempotency key is safe and may succeed.
    public var isRetryable: Bool {
        switch self {
        case .transport: true
        case .problem(let status, _, _): status == 502 || status == 503 || status == 504
        case .invalidResponse: false
        }
    }
}

/// A Swift client of the session API, for orchestrators and the trace replay.
///
/// One instance keeps a pool of keep-alive connections per node. It does not
/// retry by itself; callers retry retryable errors with the same idempotency key.
public final class HomeportClient: Sendable {
    private let session: URLSession

    public init(maximumConnectionsPerNode: Int = 64, timeout: Duration = .seconds(30)) {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = maximumConnectionsPerNode
        configuration.timeoutIntervalForRequest = timeout.secondsValue
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.urlCache = nil
        configuration.httpCookieStorage = nil
        session = URLSession(configuration: configuration)
    }

    /// Creates a session homed at the node behind `baseURL`.
    public func createSession(at baseURL: String, tenant: String) async throws(HomeportClientError) -> (SessionHandle, ClientResponse) {
        let response = try await send("POST", baseURL: baseURL, path: "/v1/tenants/\(tenant)/sessions", token: nil, body: .object([:]))
        guard let id = response.body["session"]?.stringValue, let token = response.body["token"]?.stringValue,
            let home = response.body["home"]?.stringValue
        else {
            throw .invalidResponse("the create-session answer lacks session, token or home")
        }
        return (SessionHandle(id: id, tenant: tenant, token: token, home: home), response)
    }

    public func appendTurn(
        at baseURL: String, _ handle: SessionHandle, role: String, content: String, tokens: Int,
        idempotencyKey: String?, metadata: [String: String] = [:]
    ) async throws(HomeportClientError) -> ClientResponse {
        var fields: [String: JSONValue] = [
            "role": .string(role), "content": .string(content), "tokens": .integer(Int64(tokens)),
        ]
        if !metadata.isEmpty { fields["metadata"] = .object(metadata.mapValues { .string($0) }) }
        return try await send(
            "POST", baseURL: baseURL, path: sessionPath(handle, "/turns"), token: handle.token, body: .object(fields),
            headers: idempotencyKey.map { [("Idempotency-Key", $0)] } ?? [])
    }

    /// Reads the last `tail` turns, or every turn when `tail` is nil.
    public func readTurns(at baseURL: String, _ handle: SessionHandle, tail: Int?) async throws(HomeportClientError) -> ClientResponse {
        let query = tail.map { "?tail=\($0)" } ?? ""
        return try await send("GET", baseURL: baseURL, path: sessionPath(handle, "/turns") + query, token: handle.token, body: nil)
    }

    public func describeSession(at baseURL: String, _ handle: SessionHandle) async throws(HomeportClientError) -> ClientResponse {
        try await send("GET", baseURL: baseURL, path: sessionPath(handle, ""), token: handle.token, body: nil)
    }

    public func writeLedgerEntry(
        at baseURL: String, _ handle: SessionHandle, callID: String, status: String, name: String? = nil,
        arguments: JSONValue? = nil, result: JSONValue? = nil
    ) async throws(HomeportClientError) -> ClientResponse {
        var fields: [String: JSONValue] = ["status": .string(status)]
        if let name { fields["name"] = .string(name) }
        if let arguments { fields["arguments"] = arguments }
        if let result { fields["result"] = result }
        return try await send(
            "PUT", baseURL: baseURL, path: sessionPath(handle, "/ledger/\(callID)"), token: handle.token, body: .object(fields))
    }

    public func putKVCacheRefs(
        at baseURL: String, _ handle: SessionHandle, refs: [(block: Int64, location: String)], ttlSeconds: Int? = nil
    ) async throws(HomeportClientError) -> ClientResponse {
        var fields: [String: JSONValue] = [
            "refs": .array(refs.map { .object(["block": .integer($0.block), "location": .string($0.location)]) })
        ]
        if let ttlSeconds { fields["ttlSeconds"] = .integer(Int64(ttlSeconds)) }
        return try await send("PUT", baseURL: baseURL, path: sessionPath(handle, "/kv-refs"), token: handle.token, body: .object(fields))
    }

    public func putValue(
        at baseURL: String, _ handle: SessionHandle, name: String, value: JSONValue
    ) async throws(HomeportClientError) -> ClientResponse {
        try await send(
            "PUT", baseURL: baseURL, path: sessionPath(handle, "/values/\(name)"), token: handle.token,
            body: .object(["value": value]))
    }

    private func sessionPath(_ handle: SessionHandle, _ suffix: String) -> String {
        "/v1/tenants/\(handle.tenant)/sessions/\(handle.id)\(suffix)"
    }

    /// Sends one request and decodes the answer; error statuses become `.problem`.
    public func send(
        _ method: String, baseURL: String, path: String, token: String?, body: JSONValue?,
        headers: [(String, String)] = []
    ) async throws(HomeportClientError) -> ClientResponse {
        guard let url = URL(string: baseURL + path) else {
            throw .invalidResponse("cannot form a URL from \(baseURL) and \(path)")
        }
        var request = URLRequest(url: url)
        request.httpMethod = method
        if let token { request.setValue(token, forHTTPHeaderField: "Homeport-Route") }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = Data(body.serializedBytes())
        }

        let data: Data
        let urlResponse: URLResponse
        do {
            (data, urlResponse) = try await session.data(for: request)
        } catch {
            throw .transport("\(method) \(url.absoluteString): \(error.localizedDescription)")
        }
        guard let http = urlResponse as? HTTPURLResponse else {
            throw .invalidResponse("\(method) \(path) got a non-HTTP response")
        }

        let json: JSONValue
        do {
            json = data.isEmpty ? .null : try JSONValue.parse(Array(data))
        } catch {
            throw .invalidResponse("\(method) \(path) answered \(http.statusCode) with a body that is not JSON: \(error)")
        }
        guard (200..<300).contains(http.statusCode) else {
            let type = json["type"]?.stringValue.map { String($0.dropFirst(ProblemDetails.typePrefix.count)) } ?? "unknown"
            throw .problem(status: http.statusCode, type: type, detail: json["detail"]?.stringValue ?? "no detail")
        }
        return ClientResponse(
            status: http.statusCode,
            servedBy: http.value(forHTTPHeaderField: "Homeport-Served-By"),
            routeToken: http.value(forHTTPHeaderField: "Homeport-Route"),
            replayed: http.value(forHTTPHeaderField: "Idempotent-Replayed") == "true",
            body: json)
    }
}
