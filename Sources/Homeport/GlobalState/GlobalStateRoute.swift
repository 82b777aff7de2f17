extension GlobalStateRequestHandler {
    /// A request's place in the eventually-global API.
    ///
    /// ```
    /// GET  /v1/registers
    /// GET  /v1/registers/{name}
    /// PUT  /v1/registers/{name}
    /// GET  /v1/tenants/{tenant}/rate-limit
    /// PUT  /v1/tenants/{tenant}/rate-limit
    /// POST /v1/tenants/{tenant}/rate-limit/check
    /// POST /internal/v1/registers/push
    /// POST /internal/v1/registers/digest
    /// POST /internal/v1/rate-limits/counts
    /// ```
    public enum Route: Equatable, Sendable {
        case listRegisters
        case readRegister(name: String)
        case writeRegister(name: String)
        case readRateLimit(TenantID)
        case writeRateLimit(TenantID)
        case checkRateLimit(TenantID)
        /// Entries pushed by a peer region after its writes, or as repairs.
        case pushRegisters
        /// A peer region's anti-entropy exchange.
        case exchangeDigest
        /// A peer region's rate-limit counts.
        case exchangeRateLimitCounts

        /// A short operation name for metrics and logs.
        public var operation: String {
            switch self {
            case .listRegisters: "list"
            case .readRegister: "read"
            case .writeRegister: "write"
            case .readRateLimit: "read-rate-limit"
            case .writeRateLimit: "write-rate-limit"
            case .checkRateLimit: "check"
            case .pushRegisters: "push"
            case .exchangeDigest: "digest"
            case .exchangeRateLimitCounts: "counts"
            }
        }
    }

    /// Parses `method` and `path`, returning nil for a path outside this
    /// API (sessions, health, other internal routes).
    ///
    /// - Throws: `RequestError` with `routeNotFound` for an unknown path
    ///   under `/v1/registers`, `/v1/tenants/{tenant}/rate-limit`,
    ///   `/internal/v1/registers` or `/internal/v1/rate-limits`,
    ///   `methodNotAllowed` for a known path with another method, and
    ///   `invalidPathParameter` naming `name` or `tenant` for a bad segment.
    public static func route(method: String, path: String) throws(RequestError) -> Route? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)

        if segments.starts(with: ["v1", "registers"]) {
            return try registerRoute(method: method, rest: Array(segments.dropFirst(2)), path: path)
        }
        if segments.count >= 4, segments[0] == "v1", segments[1] == "tenants", segments[3] == "rate-limit" {
            guard let tenant = TenantID(segments[2]) else {
                throw RequestError(
                    .invalidPathParameter, field: "tenant",
                    detail: "tenant \"\(segments[2].prefix(80))\" is invalid; a tenant id is \(TenantID.allowedCharactersDescription)")
            }
            switch Array(segments.dropFirst(4)) {
            case []:
                try require(method, ["GET", "PUT"], path)
                return method == "PUT" ? .writeRateLimit(tenant) : .readRateLimit(tenant)
            case ["check"]:
                try require(method, ["POST"], path)
                return .checkRateLimit(tenant)
            default:
                throw notFound(path)
            }
        }
        if segments.starts(with: ["internal", "v1", "registers"]) || segments.starts(with: ["internal", "v1", "rate-limits"]) {
            let route: Route
            switch segments.dropFirst(2).joined(separator: "/") {
            case "registers/push": route = .pushRegisters
            case "registers/digest": route = .exchangeDigest
            case "rate-limits/counts": route = .exchangeRateLimitCounts
            default: throw notFound(path)
            }
            try require(method, ["POST"], path)
            return route
        }
        return nil
    }

    private static func registerRoute(method: String, rest: [String], path: String) throws(RequestError) -> Route {
        switch rest.count {
        case 0:
            try require(method, ["GET"], path)
            return .listRegisters
        case 1:
            try require(method, ["GET", "PUT"], path)
            let name = rest[0]
            guard GlobalRegisterEntry.isValidName(name) else {
                throw RequestError(
                    .invalidPathParameter, field: "name",
                    detail: "register name \"\(name.prefix(80))\" is invalid; it must be \(GlobalRegisterEntry.nameRule)")
            }
            return method == "PUT" ? .writeRegister(name: name) : .readRegister(name: name)
        default:
            throw notFound(path)
        }
    }

    private static func require(_ method: String, _ allowed: [String], _ path: String) throws(RequestError) {
        guard allowed.contains(method) else {
            throw RequestError(
                .methodNotAllowed, field: "method",
                detail: "\(method) is not allowed on \(path.prefix(200)); use \(allowed.joined(separator: " or "))",
                allowedMethods: allowed)
        }
    }

    private static func notFound(_ path: String) -> RequestError {
        RequestError(
            .routeNotFound,
            detail:
                "no route for \(path.prefix(200)); register routes are /v1/registers and /v1/registers/{name}, rate-limit routes /v1/tenants/{tenant}/rate-limit and its /check"
        )
    }
}
