import Foundation

/// A client's reference to a session: its id, tenant, home, and the latest routing token.
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
    /// `Homeport-Served-By`: the region whose store served the request.
    public var servedBy: String?
    /// A new routing token, when the response re-homes the session.
    public var routeToken: String?
    public var replayed: Bool
    /// True when a neighbour served the read from its standby copy (`Homeport-Served-From: standby`).
    public var servedFromStandby: Bool
    /// True when the session was re-homed from a copy known to miss writes
    /// of its failed home (`Homeport-Replication-Gap: true`).
    public var replicationGap: Bool
    public var body: JSONValue
}

public enum HomeportClientError: Error, Sendable, CustomStringConvertible {
    /// The node responded with an error status and a problem+json body.
    case problem(status: Int, type: String, detail: String)
    /// No HTTP response: connection refused, reset or timed out.
    case transport(String)
    /// A response that is not the JSON the API promises.
    case invalidResponse(String)

    public var description: String {
        switch self {
        case .problem(let status, let type, let detail): "HTTP \(status) \(type): \(detail)"
        case .transport(let detail): "transport failure: \(detail)"
        case .invalidResponse(let detail): "invalid response: \(detail)"
        }
    }

    /// True when nothing reached the server or its response was lost, so a retry
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
/// Nodes are named by base URLs of the form `http://HOST:PORT` (IPv4 or
/// `localhost`). One instance keeps a pool of keep-alive connections per
/// node. It does not retry by itself; callers retry retryable errors with the
/// same idempotency key.
public final class HomeportClient: Sendable {
    private let http: HTTPClient

    /// - Parameter timeout: the longest one socket read or write may wait.
    public init(timeout: Duration = .seconds(30)) {
        http = HTTPClient(timeout: timeout)
    }

    /// Creates a session homed at the node behind `baseURL`.
    public func createSession(at baseURL: String, tenant: String) async throws(HomeportClientError) -> (SessionHandle, ClientResponse) {
        let response = try await send("POST", baseURL: baseURL, path: "/v1/tenants/\(tenant)/sessions", token: nil, body: .object([:]))
        guard let id = response.body["session"]?.stringValue, let token = response.body["token"]?.stringValue,
            let home = response.body["home"]?.stringValue
        else {
            throw .invalidResponse("the create-session response lacks session, token or home")
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

    /// Reads the last `tail` turns, or every turn when `tail` is nil. With
    /// `allowStale`, a neighbour of the home may answer from its standby copy.
    public func readTurns(
        at baseURL: String, _ handle: SessionHandle, tail: Int?, allowStale: Bool = false
    ) async throws(HomeportClientError) -> ClientResponse {
        let query = tail.map { "?tail=\($0)" } ?? ""
        return try await send(
            "GET", baseURL: baseURL, path: sessionPath(handle, "/turns") + query, token: handle.token, body: nil,
            headers: allowStale ? [("Homeport-Stale-Read", "allow")] : [])
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
        guard let components = URLComponents(string: baseURL), components.scheme == "http",
            let host = components.host, let port = components.port, let portNumber = UInt16(exactly: port)
        else {
            throw .invalidResponse("\(baseURL) is not a base URL of the form http://HOST:PORT")
        }
        let (pathOnly, query) = Self.splitQuery(path)
        var request = HTTPRequest(method: method, path: pathOnly, query: query)
        if let token { request.headers["homeport-route"] = token }
        for (name, value) in headers { request.headers[name.lowercased()] = value }
        if let body {
            request.headers["content-type"] = "application/json"
            request.body = body.serializedBytes()
        }

        let http: HTTPResponse
        do {
            http = try await self.http.send(request, host: host, port: portNumber)
        } catch {
            throw .transport("\(method) \(baseURL)\(path): \(error)")
        }

        let json: JSONValue
        do {
            json = http.body.isEmpty ? .null : try JSONValue.parse(http.body)
        } catch {
            throw .invalidResponse("\(method) \(path) returned \(http.status) with a body that is not JSON: \(error)")
        }
        guard (200..<300).contains(http.status) else {
            let type = json["type"]?.stringValue.map { String($0.dropFirst(ProblemDetails.typePrefix.count)) } ?? "unknown"
            throw .problem(status: http.status, type: type, detail: json["detail"]?.stringValue ?? "no detail")
        }
        return ClientResponse(
            status: http.status,
            servedBy: http.header("Homeport-Served-By"),
            routeToken: http.header("Homeport-Route"),
            replayed: http.header("Idempotent-Replayed") == "true",
            servedFromStandby: http.header("Homeport-Served-From") == "standby",
            replicationGap: http.header("Homeport-Replication-Gap") == "true",
            body: json)
    }

    /// Splits `/path?a=1&b=2` into the path and its (unescaped) query arguments.
    private static func splitQuery(_ target: String) -> (String, [String: String]) {
        guard let mark = target.firstIndex(of: "?") else { return (target, [:]) }
        var query: [String: String] = [:]
        for pair in target[target.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            let name = String(parts[0]).removingPercentEncoding ?? String(parts[0])
            let value = parts.count > 1 ? (String(parts[1]).removingPercentEncoding ?? String(parts[1])) : ""
            query[name] = value
        }
        return (String(target[..<mark]), query)
    }
}
