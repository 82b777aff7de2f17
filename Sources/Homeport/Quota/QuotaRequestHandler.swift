/// The HTTP API of usage quotas, served by any region from its `QuotaService`.
///
/// ```
/// PUT    /v1/tenants/{tenant}/quota                                   set the policy
/// GET    /v1/tenants/{tenant}/quota                                   status and audit
/// POST   /v1/tenants/{tenant}/quota/reservations                      reserve
/// GET    /v1/tenants/{tenant}/quota/reservations/{requestId}          read a reservation
/// DELETE /v1/tenants/{tenant}/quota/reservations/{requestId}          release
/// POST   /v1/tenants/{tenant}/quota/reservations/{requestId}/commit   commit
/// ```
///
/// A granted reservation is a 201; a repeat of the same call is a 200 with
/// `replayed: true` and `Idempotent-Replayed: true`. A denied reservation is
/// a problem+json with the reason in `type` and `reason`: 429
/// `quota-exceeded` (limit reached), 503 `quota-store-unavailable` (store
/// unreachable, quota fails closed), 503 `fail-open-bound-reached`, or 422
/// `amount-exceeds-limit`. The denial is stored like a grant, so a retry with
/// the same request id gets the same denial; try again with a new id.
/// Every other error maps through `ProblemDetails`. No route takes query
/// parameters, and GET and DELETE take no body.
public struct QuotaRequestHandler: Sendable {
    public enum Route: Sendable, Equatable {
        case setPolicy(TenantID)
        case status(TenantID)
        case reserve(TenantID)
        case reservation(TenantID, ReservationID)
        case release(TenantID, ReservationID)
        case commit(TenantID, ReservationID)
    }

    public static let replayedHeader = "Idempotent-Replayed"

    public let service: QuotaService

    public init(service: QuotaService) {
        self.service = service
    }

    /// Parses a quota route. Returns nil for a path outside
    /// `/v1/tenants/{tenant}/quota`, so other handlers can try it.
    ///
    /// - Throws: `RequestError` with `invalidPathParameter` naming `tenant`
    ///   or `requestId`, `routeNotFound` for an unknown path under the quota,
    ///   and `methodNotAllowed` with the accepted methods.
    public static func route(method: String, path: String) throws(RequestError) -> Route? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        guard segments.count >= 4, segments[0] == "v1", segments[1] == "tenants", segments[3] == "quota" else { return nil }

        guard let tenant = TenantID(segments[2]) else {
            throw RequestError(
                .invalidPathParameter, field: "tenant",
                detail: "tenant \"\(segments[2].prefix(80))\" is invalid; a tenant id is \(TenantID.allowedCharactersDescription)")
        }
        let rest = Array(segments.dropFirst(4))

        switch rest.count {
        case 0:
            try require(method, ["GET", "PUT"], path)
            return method == "PUT" ? .setPolicy(tenant) : .status(tenant)
        case 1 where rest[0] == "reservations":
            try require(method, ["POST"], path)
            return .reserve(tenant)
        case 2 where rest[0] == "reservations":
            let id = try requestID(rest[1])
            try require(method, ["GET", "DELETE"], path)
            return method == "DELETE" ? .release(tenant, id) : .reservation(tenant, id)
        case 3 where rest[0] == "reservations" && rest[2] == "commit":
            let id = try requestID(rest[1])
            try require(method, ["POST"], path)
            return .commit(tenant, id)
        default:
            throw RequestError(
                .routeNotFound,
                detail:
                    "no route for \(path.prefix(200)); quota routes are /v1/tenants/{tenant}/quota and …/quota/reservations[/{requestId}[/commit]]"
            )
        }
    }

    /// Serves one request. Throws `RequestError` for bad input and
    /// `QuotaError` for refused operations; `ProblemDetails.from` maps both.
    public func handle(_ route: Route, request: HTTPRequest) async throws -> HTTPResponse {
        try rejectQuery(request)

        switch route {
        case .setPolicy(let tenant):
            let policy = try parsePolicy(request.body)
            let record = try await service.setPolicy(policy, for: tenant)
            return .json(200, Self.policyJSON(tenant: tenant, record: record))

        case .status(let tenant):
            try rejectBody(request)
            return .json(200, try await service.status(tenant: tenant).json)

        case .reserve(let tenant):
            let (id, amount) = try parseReservation(request.body)
            let result = try await service.reserve(tenant: tenant, requestID: id, amount: amount)
            return Self.response(for: result, region: service.region)

        case .reservation(let tenant, let id):
            try rejectBody(request)
            let reservation = try service.reservation(tenant: tenant, requestID: id)
            return .json(200, Self.reservationJSON(reservation))

        case .release(let tenant, let id):
            try rejectBody(request)
            let result = try service.release(tenant: tenant, requestID: id)
            return Self.response(for: result)

        case .commit(let tenant, let id):
            var reader = try JSONObjectReader.parseBody(request.body)
            let used = try reader.integer("used", in: 0...QuotaPolicy.maximumTokens)
            try reader.finish()
            let result = try service.commit(tenant: tenant, requestID: id, used: used)
            return Self.response(for: result)
        }
    }

    // MARK: Parsing

    private static func require(_ method: String, _ allowed: [String], _ path: String) throws(RequestError) {
        guard allowed.contains(method) else {
            throw RequestError(
                .methodNotAllowed,
                detail: "\(method.prefix(16)) is not allowed on \(path.prefix(200)); use \(allowed.joined(separator: " or "))",
                allowedMethods: allowed)
        }
    }

    private static func requestID(_ text: String) throws(RequestError) -> ReservationID {
        guard let id = ReservationID(text) else {
            throw RequestError(
                .invalidPathParameter, field: "requestId",
                detail: "request id \"\(text.prefix(80))\" is invalid; a request id is \(ReservationID.allowedCharactersDescription)")
        }
        return id
    }

    private func rejectBody(_ request: HTTPRequest) throws(RequestError) {
        guard request.body.isEmpty else {
            throw RequestError(
                .invalidValue, field: "body", detail: "\(request.method) \(request.path.prefix(200)) takes no body; send none")
        }
    }

    private func rejectQuery(_ request: HTTPRequest) throws(RequestError) {
        guard let name = request.query.keys.sorted().first else { return }
        throw RequestError(
            .invalidQueryParameter, field: name,
            detail: "\(request.method) \(request.path.prefix(200)) takes no query parameters; remove \"\(name.prefix(80))\"")
    }

    private func parsePolicy(_ body: [UInt8]) throws -> QuotaPolicy {
        var reader = try JSONObjectReader.parseBody(body)
        let limit = try reader.integer("limit", in: 1...QuotaPolicy.maximumTokens)
        let periodSeconds = try reader.integer("periodSeconds", in: 1...QuotaPolicy.maximumPeriodSeconds)
        var failMode = QuotaFailMode.closed
        if let text = try reader.optionalString("failMode", maximumBytes: 16) {
            guard let mode = QuotaFailMode(rawValue: text) else {
                throw reader.invalidValue("failMode", "has unknown value \"\(text)\"; expected closed or open")
            }
            failMode = mode
        }
        let failOpenBound = try reader.optionalInteger("failOpenBound", in: 0...QuotaPolicy.maximumTokens) ?? 0
        try reader.finish()

        let policy = QuotaPolicy(limit: limit, periodSeconds: periodSeconds, failMode: failMode, failOpenBound: failOpenBound)
        try policy.validate()
        return policy
    }

    private func parseReservation(_ body: [UInt8]) throws(RequestError) -> (ReservationID, Int64) {
        var reader = try JSONObjectReader.parseBody(body)
        let text = try reader.string("requestId", maximumBytes: 128)
        guard let id = ReservationID(text) else {
            throw reader.invalidValue("requestId", "is invalid; a request id is \(ReservationID.allowedCharactersDescription)")
        }
        let amount = try reader.integer("amount", in: 1...QuotaPolicy.maximumTokens)
        try reader.finish()
        return (id, amount)
    }

    // MARK: Responses

    static func response(for result: ReserveResult, region: String) -> HTTPResponse {
        let replayHeaders: [(name: String, value: String)] = result.replayed ? [(replayedHeader, "true")] : []

        switch result.outcome {
        case .granted(let source, let expiresAt):
            let body: JSONValue = .object([
                "requestId": .string(result.requestID.rawValue),
                "amount": .integer(result.amount),
                "granted": .bool(true),
                "servedFrom": .string(source.rawValue),
                "expiresAt": .integer(expiresAt),
                "region": .string(region),
                "replayed": .bool(result.replayed),
            ])
            return .json(result.replayed ? 200 : 201, body, headers: replayHeaders)

        case .denied(let reason, let detail):
            let problem = ProblemDetails.from(QuotaError(reason.errorCode, detail))
            guard case .object(var fields) = problem.json else { return problem.response(headers: replayHeaders) }
            fields["requestId"] = .string(result.requestID.rawValue)
            fields["amount"] = .integer(result.amount)
            fields["granted"] = .bool(false)
            fields["reason"] = .string(reason.rawValue)
            fields["region"] = .string(region)
            fields["replayed"] = .bool(result.replayed)
            var response = problem.response(headers: replayHeaders)
            response.body = JSONValue.object(fields).serializedBytes()
            return response
        }
    }

    static func response(for result: SettleResult) -> HTTPResponse {
        guard case .object(var fields) = reservationJSON(result.reservation) else { return .json(200, .null) }
        fields["returned"] = .integer(result.returned)
        fields["replayed"] = .bool(result.replayed)
        return .json(200, .object(fields), headers: result.replayed ? [(replayedHeader, "true")] : [])
    }

    static func reservationJSON(_ reservation: Reservation) -> JSONValue {
        var fields: [String: JSONValue] = [
            "requestId": .string(reservation.requestID.rawValue),
            "amount": .integer(reservation.amount),
            "state": .string(reservation.state.name),
            "granted": .bool(reservation.outcome.isGranted),
        ]
        switch reservation.outcome {
        case .granted(let source, let expiresAt):
            fields["servedFrom"] = .string(source.rawValue)
            fields["expiresAt"] = .integer(expiresAt)
        case .denied(let reason, _):
            fields["reason"] = .string(reason.rawValue)
        }
        if case .committed(let used) = reservation.state {
            fields["used"] = .integer(used)
        }
        return .object(fields)
    }

    static func policyJSON(tenant: TenantID, record: QuotaRecord) -> JSONValue {
        .object([
            "tenant": .string(tenant.rawValue),
            "limit": .integer(record.policy.limit),
            "periodSeconds": .integer(record.policy.periodSeconds),
            "failMode": .string(record.policy.failMode.rawValue),
            "failOpenBound": .integer(record.policy.failOpenBound),
            "consumed": .integer(record.consumed),
            "outstanding": .integer(record.outstanding),
            "remaining": .integer(record.free),
        ])
    }
}
