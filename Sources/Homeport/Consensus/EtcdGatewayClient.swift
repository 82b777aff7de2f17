import Synchronization

/// One request to etcd's v3 gateway, and what the client needs to retry it
/// safely and to report its failure.
struct EtcdGatewayCall {
    /// The gateway path, such as `/v3/kv/put`.
    let path: String
    let body: JSONValue
    /// The request in words, for messages, such as `put of key "a"`.
    let summary: String
    /// True when sending the request twice has the effect of sending it once,
    /// so that after a timeout it may go to another member.
    let isRetryable: Bool
    /// The leases the request names, for the message of `leaseNotFound`.
    var leases: [LeaseID] = []
}

/// A gateway response with status 200, parsed, and the member that sent it.
struct EtcdGatewayResponse {
    let object: EtcdResponseObject
    let endpoint: EtcdLinearizableStore.Endpoint

    /// Reads the response with `body`. A response of the wrong shape becomes
    /// `unexpectedResponse` naming the member, the call and the field.
    func decode<Value>(
        for summary: String, _ body: (EtcdResponseObject) throws(EtcdResponseError) -> Value
    ) throws(LinearizableStoreError) -> Value {
        do {
            return try body(object)
        } catch {
            throw EtcdGatewayClient.invalidResponse(from: endpoint, summary: summary, reason: error.reason, cause: error)
        }
    }
}

/// Sends requests to etcd's v3 gateway, moving on to the next member when
/// one cannot serve, and maps etcd's errors to `LinearizableStoreError`.
///
/// The rules for moving on are in `EtcdLinearizableStore`'s documentation.
final class EtcdGatewayClient: Sendable {
    let endpoints: [EtcdLinearizableStore.Endpoint]
    private let http: HTTPClient
    private let logger: Logger?
    /// The index in `endpoints` of the member that the next request goes to first.
    private let preferredEndpoint = Mutex(0)

    init(configuration: EtcdLinearizableStore.Configuration, logger: Logger?) {
        self.endpoints = configuration.endpoints
        self.logger = logger
        self.http = HTTPClient(
            timeout: configuration.requestTimeout, maximumConcurrentExchanges: configuration.maximumConcurrentRequests,
            // Idle connections cost a descriptor each; a burst beyond 16 at
            // once opens new ones, which is cheap next to a consensus round.
            maximumIdlePerEndpoint: min(configuration.maximumConcurrentRequests, 16))
    }

    /// One member's failure to serve a request.
    private struct MemberFailure {
        /// The member and what went wrong, for the message.
        let detail: String
        /// False only when the request certainly did not reach the member,
        /// because the connection was never opened.
        let maybeDelivered: Bool
        let cause: HTTPClientError?
    }

    private enum Attempt {
        case served(EtcdGatewayResponse)
        case failed(MemberFailure)
    }

    /// Sends the call to the members in turn and returns the first response
    /// with status 200.
    ///
    /// Throws `unavailable` when no member served the request, and the
    /// matching code when a member rejected it.
    func perform(_ call: EtcdGatewayCall) async throws(LinearizableStoreError) -> EtcdGatewayResponse {
        let request = HTTPRequest(
            method: "POST", path: call.path, headers: ["content-type": "application/json"], body: call.body.serializedBytes())
        let first = preferredEndpoint.withLock { $0 }
        var failures: [MemberFailure] = []

        for attempt in 0..<endpoints.count {
            let index = (first + attempt) % endpoints.count
            let failure: MemberFailure
            switch try await send(request, call: call, to: index) {
            case .served(let response):
                return response
            case .failed(let failed):
                failure = failed
            }
            failures.append(failure)

            // A write that may have reached a member must not be sent twice,
            // because the member may have applied it.
            guard !failure.maybeDelivered || call.isRetryable else { break }
            if attempt + 1 < endpoints.count {
                logger?.warning(
                    "etcd member failed, trying the next",
                    ["endpoint": endpoints[index].description, "path": call.path, "error": failure.detail])
            }
        }

        // The next call starts after the member that failed last, unless
        // another call has already moved on.
        let lastIndex = (first + failures.count - 1) % endpoints.count
        preferredEndpoint.withLock { preferred in
            if preferred == lastIndex { preferred = (lastIndex + 1) % endpoints.count }
        }

        let outcome: String
        if call.isRetryable {
            outcome = "Retry once an etcd member is reachable."
        } else if failures.contains(where: \.maybeDelivered) {
            outcome = "The write may or may not have been applied, so re-read before retrying."
        } else {
            outcome = "The write was not sent, so it is safe to retry."
        }
        throw LinearizableStoreError(
            .unavailable, "etcd is unavailable for the \(call.summary): \(failures.map(\.detail).joined(separator: ", ")). \(outcome)",
            cause: failures.last?.cause)
    }

    /// Sends the request to one member. Returns its response or why it could
    /// not serve, and throws when it rejected the request.
    private func send(_ request: HTTPRequest, call: EtcdGatewayCall, to index: Int) async throws(LinearizableStoreError) -> Attempt {
        let endpoint = endpoints[index]

        let response: HTTPResponse
        do {
            response = try await http.send(request, host: endpoint.host, port: endpoint.port)
        } catch {
            let notSent = error.code == .connectFailed || error.code == .invalidAddress
            return .failed(MemberFailure(detail: "\(endpoint) (\(error))", maybeDelivered: !notSent, cause: error))
        }

        // The member responded but cannot serve now, such as a member without
        // a leader, or a proxy in front of a member that is down.
        let gatewayError = response.status == 200 ? nil : EtcdGatewayJSON.gatewayError(in: response.body)
        if response.status != 200, Self.isMemberUnavailable(gatewayError, status: response.status) {
            let detail = gatewayError.map { "gRPC code \($0.code): \($0.message)" } ?? "HTTP \(response.status)"
            return .failed(MemberFailure(detail: "\(endpoint) (\(detail))", maybeDelivered: true, cause: nil))
        }

        // Any other response shows the member is serving, so the next call starts here.
        preferredEndpoint.withLock { $0 = index }

        guard response.status == 200 else {
            throw Self.rejection(gatewayError, response: response, call: call, endpoint: endpoint)
        }
        do {
            return .served(EtcdGatewayResponse(object: try EtcdResponseObject(body: response.body), endpoint: endpoint))
        } catch {
            throw Self.invalidResponse(from: endpoint, summary: call.summary, reason: error.reason, cause: error)
        }
    }

    /// True for a response that means this member cannot serve now, while
    /// another member might. These are gRPC codes Canceled (1),
    /// DeadlineExceeded (4) and Unavailable (14, such as "no leader"), etcd's
    /// "too many requests" (8), and a 502, 503 or 504 without etcd's error body.
    private static func isMemberUnavailable(_ gatewayError: (code: Int, message: String)?, status: Int) -> Bool {
        guard let gatewayError else { return [502, 503, 504].contains(status) }

        switch gatewayError.code {
        case 1, 4, 14:
            return true
        case 8:
            return gatewayError.message.contains("too many requests")
        default:
            return false
        }
    }

    /// Maps a member's rejection to the store's error codes.
    private static func rejection(
        _ gatewayError: (code: Int, message: String)?, response: HTTPResponse, call: EtcdGatewayCall,
        endpoint: EtcdLinearizableStore.Endpoint
    ) -> LinearizableStoreError {
        guard let gatewayError else {
            return invalidResponse(
                from: endpoint, summary: call.summary,
                reason:
                    "HTTP \(response.status) to POST \(call.path) with body \(EtcdResponseObject.excerpt(response.body)). Check that the address is the client URL of an etcd 3.4 or newer member.",
                cause: nil)
        }
        return rejection(code: gatewayError.code, message: gatewayError.message, status: response.status, call: call, endpoint: endpoint)
    }

    /// Maps etcd's gRPC status to the store's error codes.
    static func rejection(
        code: Int, message: String, status: Int, call: EtcdGatewayCall, endpoint: EtcdLinearizableStore.Endpoint
    ) -> LinearizableStoreError {
        let member = "etcd member \(endpoint)"

        // gRPC NotFound (5) also covers users and roles, so the text is matched too.
        if code == 5, message.contains("lease not found") {
            return leaseNotFound(call.leases)
        }
        if code == 3, message.contains("request is too large") {
            return LinearizableStoreError(
                .valueTooLarge,
                "\(member) rejected the \(call.summary) because the request is over its --max-request-bytes limit (\(message)). Store a smaller value, or raise the limit on every member."
            )
        }
        if code == 3 {
            return LinearizableStoreError(.invalidArgument, "\(member) rejected the \(call.summary) as invalid: \(message)")
        }
        return LinearizableStoreError(
            .unexpectedResponse, "\(member) rejected the \(call.summary) with HTTP \(status) and gRPC code \(code): \(message)")
    }

    static func invalidResponse(
        from endpoint: EtcdLinearizableStore.Endpoint, summary: String, reason: String, cause: (any Error)?
    ) -> LinearizableStoreError {
        LinearizableStoreError(
            .unexpectedResponse, "etcd member \(endpoint) returned an invalid response to the \(summary): \(reason)", cause: cause)
    }

    static func leaseNotFound(_ leases: [LeaseID]) -> LinearizableStoreError {
        let subject: String
        switch leases.count {
        case 0: subject = "a lease of the request was"
        case 1: subject = "lease \(leases[0]) was"
        default: subject = "one of the leases \(leases.map(\.description).joined(separator: ", ")) was"
        }
        return LinearizableStoreError(
            .leaseNotFound, "\(subject) not found because it expired, was revoked or was never granted. Grant a new lease.")
    }
}
