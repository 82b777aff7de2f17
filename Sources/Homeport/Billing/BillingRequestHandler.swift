/// Serves a region's billing routes from its `BillingRecorder`.
///
/// ```
/// POST /v1/tenants/{tenant}/usage          {"requestId": "...", "tokens": N, "model": "..."}
///      202 {"tenant","requestId","tokens","model","region","flushed":false}  recorded, flushed later
///      200 the first record, with header Idempotent-Replayed: true          a duplicate
/// GET  /v1/tenants/{tenant}/usage/totals
///      200 {"tenant","tokens","records","asOfRevision","unflushedRecords"}
/// ```
///
/// A totals read first flushes this region's records of the tenant, then
/// reads the store linearizably. `unflushedRecords` counts this region's
/// records that the totals still miss: records that arrived during the read,
/// or that a flush lost to contention. Records buffered in other regions are
/// not included until those regions flush them.
///
/// `handle` throws `RequestError` for bad input (naming the field) and
/// `BillingError` otherwise; `ProblemDetails.from` maps both to problem+json.
public struct BillingRequestHandler: Sendable {
    public enum Route: Equatable, Sendable {
        case recordUsage(TenantID)
        case readTotals(TenantID)
    }

    public let recorder: BillingRecorder

    public init(recorder: BillingRecorder) {
        self.recorder = recorder
    }

    /// Parses a billing route, or returns nil for a path outside
    /// `/v1/tenants/{tenant}/usage`.
    ///
    /// - Throws: `RequestError` with `methodNotAllowed` for a billing path and
    ///   another method, `invalidPathParameter` naming `tenant` for a bad
    ///   tenant id, and `routeNotFound` for an unknown path under `usage`.
    public static func route(method: String, path: String) throws(RequestError) -> Route? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        guard segments.count >= 4, segments[0] == "v1", segments[1] == "tenants", segments[3] == "usage" else { return nil }

        guard let tenant = TenantID(segments[2]) else {
            throw RequestError(
                .invalidPathParameter, field: "tenant",
                detail: "tenant \"\(segments[2].prefix(80))\" is invalid; a tenant id is \(TenantID.allowedCharactersDescription)")
        }

        switch segments.count {
        case 4:
            try require(method, "POST", path)
            return .recordUsage(tenant)
        case 5 where segments[4] == "totals":
            try require(method, "GET", path)
            return .readTotals(tenant)
        default:
            throw RequestError(
                .routeNotFound,
                detail:
                    "no route for \(path.prefix(200)); billing routes are POST /v1/tenants/{tenant}/usage and GET /v1/tenants/{tenant}/usage/totals"
            )
        }
    }

    public func handle(_ route: Route, request: HTTPRequest) async throws -> HTTPResponse {
        switch route {
        case .recordUsage(let tenant):
            try Self.rejectQuery(request)
            let record = try Self.parseRecord(request.body, tenant: tenant)

            switch try recorder.record(record) {
            case .accepted(let accepted):
                return .json(202, json(accepted, flushed: false))
            case .duplicate(let first, let flushed):
                return .json(200, json(first, flushed: flushed), headers: [("Idempotent-Replayed", "true")])
            }

        case .readTotals(let tenant):
            try Self.rejectQuery(request)
            guard request.body.isEmpty else {
                throw RequestError(.invalidValue, field: "body", detail: "GET \(request.path) takes no body; send none")
            }

            let totals = try await recorder.totals(of: tenant)
            return .json(
                200,
                .object([
                    "tenant": .string(totals.tenant.rawValue),
                    "tokens": .integer(totals.tokens),
                    "records": .integer(totals.records),
                    "asOfRevision": .integer(totals.asOfRevision),
                    "unflushedRecords": .integer(Int64(totals.unflushedRecords)),
                ]))
        }
    }

    private func json(_ record: UsageRecord, flushed: Bool) -> JSONValue {
        var fields: [String: JSONValue] = [
            "tenant": .string(record.tenant.rawValue),
            "requestId": .string(record.requestID),
            "tokens": .integer(record.tokens),
            "region": .string(recorder.region),
            "flushed": .bool(flushed),
        ]
        if let model = record.model { fields["model"] = .string(model) }
        return .object(fields)
    }

    /// Parses `{"requestId", "tokens", "model"?}`, rejecting unknown fields.
    static func parseRecord(_ body: [UInt8], tenant: TenantID) throws(RequestError) -> UsageRecord {
        var reader = try JSONObjectReader.parseBody(body)
        let requestID = try reader.string("requestId", maximumBytes: UsageRecord.maximumRequestIDBytes)
        let tokens = try reader.integer("tokens", in: 0...UsageRecord.maximumTokens)
        let model = try reader.optionalString("model", maximumBytes: UsageRecord.maximumModelBytes)
        try reader.finish()

        do {
            return try UsageRecord(tenant: tenant, requestID: requestID, model: model, tokens: tokens)
        } catch {
            throw RequestError(.invalidValue, field: error.field, detail: error.detail)
        }
    }

    private static func rejectQuery(_ request: HTTPRequest) throws(RequestError) {
        guard let name = request.query.keys.sorted().first else { return }
        throw RequestError(
            .invalidQueryParameter, field: name, detail: "\(request.method) \(request.path) takes no query parameters; remove \"\(name)\"")
    }

    private static func require(_ method: String, _ allowed: String, _ path: String) throws(RequestError) {
        guard method == allowed else {
            throw RequestError(
                .methodNotAllowed, field: "method", detail: "\(method) is not allowed on \(path.prefix(200)); use \(allowed)",
                allowedMethods: [allowed])
        }
    }
}
