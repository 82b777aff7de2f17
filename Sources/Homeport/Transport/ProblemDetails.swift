/// An RFC 9457 problem+json body: every error response of the API.
public struct ProblemDetails: Sendable, Equatable {
    public var status: Int
    /// A short stable code (`token-expired`, `unknown-field`, …), sent as
    /// `type` in the form `urn:homeport:problem:<code>`.
    public var type: String
    public var title: String
    /// What failed, on which value, and what to do next.
    public var detail: String
    /// The body field, path parameter or header at fault, when one is.
    public var field: String?
    public var region: String?
    public var requestID: String?
    /// Methods the path accepts, sent as the `Allow` header of a 405.
    public var allowedMethods: [String] = []

    public init(
        status: Int, type: String, title: String, detail: String, field: String? = nil, region: String? = nil,
        requestID: String? = nil
    ) {
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.field = field
        self.region = region
        self.requestID = requestID
    }

    public static let typePrefix = "urn:homeport:problem:"

    public var json: JSONValue {
        var fields: [String: JSONValue] = [
            "type": .string(Self.typePrefix + type),
            "title": .string(title),
            "status": .integer(Int64(status)),
            "detail": .string(detail),
        ]
        if let field { fields["field"] = .string(field) }
        if let region { fields["region"] = .string(region) }
        if let requestID { fields["requestId"] = .string(requestID) }
        return .object(fields)
    }

    public func response(headers: [(name: String, value: String)] = []) -> HTTPResponse {
        var allHeaders: [(name: String, value: String)] = [("Content-Type", "application/problem+json")]
        if status == 401 {
            allHeaders.append(("WWW-Authenticate", "Homeport-Route"))
        }
        if !allowedMethods.isEmpty {
            allHeaders.append(("Allow", allowedMethods.joined(separator: ", ")))
        }
        return HTTPResponse(status: status, headers: allHeaders + headers, body: json.serializedBytes())
    }

    /// Maps any error the API can raise to its status and problem body. The
    /// one place that decides statuses; an error of an unknown type becomes a
    /// generic 500 whose text reveals nothing internal (the caller logs it).
    public static func from(_ error: any Error) -> ProblemDetails {
        switch error {
        case let error as RequestError:
            return from(error)
        case let error as RoutingTokenError:
            return ProblemDetails(
                status: 401, type: error.code.rawValue, title: "Invalid routing token", detail: error.detail, field: "Homeport-Route")
        case let error as SessionStoreError:
            return from(error)
        case let error as ForwardingError:
            return from(error)
        case let error as SessionUnavailableError:
            return ProblemDetails(status: 503, type: "session-unavailable", title: "Session unavailable", detail: error.description)
        case let error as ReconcileError:
            return ProblemDetails(status: 409, type: error.code.rawValue, title: "Reconcile rejected", detail: error.detail)
        case let error as RegionFencedError:
            return ProblemDetails(status: 503, type: "region-fenced", title: "Region fenced", detail: error.description)
        case let error as BillingError:
            return from(error)
        case let error as GlobalStateError:
            return from(error)
        case let error as QuotaError:
            return from(error)
        default:
            return ProblemDetails(
                status: 500, type: "internal-error", title: "Internal error",
                detail: "the server failed to handle the request; it has been logged with this request id")
        }
    }

    private static func from(_ error: RequestError) -> ProblemDetails {
        let status: Int
        let title: String
        switch error.code {
        case .malformedJSON: (status, title) = (400, "Malformed JSON")
        case .unknownField: (status, title) = (400, "Unknown field")
        case .missingField: (status, title) = (400, "Missing field")
        case .wrongType: (status, title) = (400, "Wrong type")
        case .invalidValue: (status, title) = (400, "Invalid value")
        case .bodyTooLarge: (status, title) = (413, "Request body too large")
        case .invalidPathParameter: (status, title) = (400, "Invalid path parameter")
        case .invalidQueryParameter: (status, title) = (400, "Invalid query parameter")
        case .routeNotFound: (status, title) = (404, "Not found")
        case .methodNotAllowed: (status, title) = (405, "Method not allowed")
        }
        var problem = ProblemDetails(status: status, type: error.code.rawValue, title: title, detail: error.detail, field: error.field)
        problem.allowedMethods = error.allowedMethods
        return problem
    }

    private static func from(_ error: SessionStoreError) -> ProblemDetails {
        let status: Int
        let title: String
        switch error.code {
        case .sessionNotFound: (status, title) = (404, "Session not found")
        case .sessionExists: (status, title) = (409, "Session exists")
        case .entryNotFound: (status, title) = (404, "Not found")
        case .ledgerConflict: (status, title) = (409, "Ledger conflict")
        case .idempotencyKeyReused: (status, title) = (422, "Idempotency key reused")
        case .limitExceeded: (status, title) = (413, "Limit exceeded")
        case .staleEpoch: (status, title) = (409, "Stale epoch")
        case .invalidWrite: (status, title) = (400, "Invalid write")
        case .notDurable: (status, title) = (503, "Write not durable")
        case .reconcilePositionUnknown: (status, title) = (409, "Reconcile position unknown")
        case .storeUnavailable: (status, title) = (503, "Session store unavailable")
        }
        return ProblemDetails(status: status, type: error.code.rawValue, title: title, detail: error.detail)
    }

    private static func from(_ error: BillingError) -> ProblemDetails {
        let status: Int
        let title: String
        switch error.code {
        case .invalidRecord: (status, title) = (400, "Invalid usage record")
        case .requestConflict: (status, title) = (409, "Usage request conflict")
        case .bufferFull: (status, title) = (503, "Usage buffer full")
        case .storeUnavailable: (status, title) = (503, "Billing store unavailable")
        case .contention: (status, title) = (503, "Billing contention")
        case .storeFailed: (status, title) = (502, "Billing store failed")
        case .totalsOverflow: (status, title) = (500, "Billing totals overflow")
        case .logFailed: (status, title) = (500, "Usage log failed")
        case .invalidConfiguration: (status, title) = (500, "Invalid billing configuration")
        }
        return ProblemDetails(status: status, type: error.code.rawValue, title: title, detail: error.detail, field: error.field)
    }

    private static func from(_ error: QuotaError) -> ProblemDetails {
        let status: Int
        let title: String
        switch error.code {
        case .quotaNotFound: (status, title) = (404, "Quota not found")
        case .reservationNotFound: (status, title) = (404, "Reservation not found")
        case .requestIDReused: (status, title) = (422, "Request id reused")
        case .usedExceedsReserved: (status, title) = (422, "Used exceeds reserved")
        case .reservationNotHeld: (status, title) = (409, "Reservation not held")
        case .limitBelowUsage: (status, title) = (409, "Limit below usage")
        case .invalidPolicy: (status, title) = (400, "Invalid value")
        case .invalidAmount: (status, title) = (400, "Invalid value")
        case .limitReached: (status, title) = (429, "Quota exceeded")
        case .amountExceedsLimit: (status, title) = (422, "Amount exceeds limit")
        case .storeUnavailable: (status, title) = (503, "Quota store unavailable")
        case .failOpenBoundReached: (status, title) = (503, "Fail-open bound reached")
        case .corruptRecord:
            // The detail names store keys and fields: keep it in the log.
            return ProblemDetails(
                status: 500, type: error.code.rawValue, title: "Quota record unreadable",
                detail: "the tenant's quota record in the linearizable store cannot be used; an operator must repair it")
        }
        return ProblemDetails(status: status, type: error.code.rawValue, title: title, detail: error.detail, field: error.field)
    }

    private static func from(_ error: GlobalStateError) -> ProblemDetails {
        let status: Int
        let title: String
        let field: String?
        switch error.code {
        case .registerNotFound: (status, title, field) = (404, "Register not found", "name")
        case .registerLimitReached: (status, title, field) = (409, "Register limit reached", "name")
        case .valueTooLarge: (status, title, field) = (413, "Register value too large", "value")
        case .rateLimitNotFound: (status, title, field) = (404, "Rate limit not found", "tenant")
        case .peerSignatureInvalid: (status, title, field) = (401, "Invalid peer signature", PeerSignature.header)
        case .unknownPeer: (status, title, field) = (403, "Unknown peer region", RegionNode.forwardedFromHeader)
        case .clockDrift: (status, title, field) = (422, "Clock drift", "stamp")
        }
        return ProblemDetails(status: status, type: error.code.rawValue, title: title, detail: error.detail, field: field)
    }

    private static func from(_ error: ForwardingError) -> ProblemDetails {
        switch error.code {
        case .unknownRegion:
            return ProblemDetails(status: 421, type: error.code.rawValue, title: "Unknown home region", detail: error.detail)
        case .forwardingLoop:
            return ProblemDetails(status: 508, type: error.code.rawValue, title: "Forwarding loop", detail: error.detail)
        case .homeUnreachable:
            return ProblemDetails(status: 503, type: error.code.rawValue, title: "Home region unreachable", detail: error.detail)
        case .timedOut:
            return ProblemDetails(status: 504, type: error.code.rawValue, title: "Home region timed out", detail: error.detail)
        }
    }
}
