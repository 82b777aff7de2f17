/// Serves the eventually-global API of one node: global registers, tenant
/// rate limits, and the internal routes other regions call.
///
/// Public routes answer from this region alone and never wait for another
/// region. Internal routes require a `Homeport-Peer-Signature` by a key of
/// the ring and a `Homeport-Forwarded-From` naming a peer region. Errors are
/// thrown typed and become problem+json through `ProblemDetails`, except a
/// rejected rate-limit check, which returns its 429 with `Retry-After`.
public struct GlobalStateRequestHandler: Sendable {
    public let registers: GlobalRegisterStore
    public let rateLimiter: RateLimiter
    private let keyRing: TokenKeyRing
    private let logger: Logger
    /// Register values one digest reply carries, in bytes of JSON.
    private let maximumReplyValueBytes: Int

    public init(
        rateLimiter: RateLimiter, keyRing: TokenKeyRing, logger: Logger,
        maximumReplyValueBytes: Int = GlobalRegisterReplicator.Configuration().maximumMessageValueBytes
    ) {
        self.registers = rateLimiter.registers
        self.rateLimiter = rateLimiter
        self.keyRing = keyRing
        self.logger = logger.with(["region": rateLimiter.region])
        self.maximumReplyValueBytes = maximumReplyValueBytes
    }

    public var region: String { registers.region }

    /// Routes and serves `request`, mapping a thrown error to its
    /// problem+json response and logging it. Returns nil when the path is
    /// not part of this API.
    public func respond(to request: HTTPRequest) async -> HTTPResponse? {
        do {
            guard let route = try Self.route(method: request.method, path: request.path) else { return nil }
            return try await handle(route, request: request)
        } catch {
            var problem = ProblemDetails.from(error)
            problem.region = region
            let metadata = [
                "method": request.method, "path": String(request.path.prefix(200)), "status": "\(problem.status)", "error": "\(error)",
            ]
            if problem.status >= 500 {
                logger.error("global-state request failed", metadata)
            } else {
                logger.debug("global-state request rejected", metadata)
            }
            return problem.response()
        }
    }

    /// Serves one parsed route.
    /// - Throws: `RequestError` for bad input (naming the field),
    ///   `GlobalStateError` for missing registers, limits and peer checks.
    public func handle(_ route: Route, request: HTTPRequest) async throws -> HTTPResponse {
        switch route {
        case .listRegisters:
            try Self.rejectBodyAndQuery(request)
            return .json(200, .object(["registers": .array(registers.entries().map(\.json))]))

        case .readRegister(let name):
            try Self.rejectBodyAndQuery(request)
            guard let entry = registers.entry(name) else {
                throw GlobalStateError(
                    .registerNotFound, subject: name, "register \"\(name)\" does not exist in \(region); write it with PUT first")
            }
            return .json(200, entry.json)

        case .writeRegister(let name):
            try Self.rejectQuery(request)
            guard !name.hasPrefix(RateLimitSetting.registerPrefix) else {
                throw RequestError(
                    .invalidPathParameter, field: "name",
                    detail:
                        "register names starting with \"\(RateLimitSetting.registerPrefix)\" hold rate-limit settings; set them with PUT /v1/tenants/{tenant}/rate-limit"
                )
            }
            var body = try JSONObjectReader.parseBody(request.body)
            let value = try body.value("value")
            try body.finish()
            return .json(200, try registers.write(name, value: value).json)

        case .readRateLimit(let tenant):
            try Self.rejectBodyAndQuery(request)
            let name = RateLimitSetting.registerName(for: tenant)
            guard let setting = rateLimiter.setting(for: tenant), let entry = registers.entry(name) else {
                throw GlobalStateError(
                    .rateLimitNotFound, subject: tenant.rawValue,
                    "tenant \(tenant) has no rate limit in \(region); set one with PUT /v1/tenants/\(tenant)/rate-limit")
            }
            return .json(200, Self.settingJSON(setting, tenant: tenant, stamp: entry.stamp))

        case .writeRateLimit(let tenant):
            try Self.rejectQuery(request)
            let setting = try RateLimitSetting(reading: JSONObjectReader.parseBody(request.body))
            let entry = try rateLimiter.setSetting(setting, for: tenant)
            return .json(200, Self.settingJSON(setting, tenant: tenant, stamp: entry.stamp))

        case .checkRateLimit(let tenant):
            try Self.rejectQuery(request)
            // An empty body or an empty object; no fields are defined yet.
            if !request.body.isEmpty {
                try JSONObjectReader.parseBody(request.body).finish()
            }
            return Self.checkResponse(rateLimiter.check(tenant), region: region)

        case .pushRegisters:
            let sender = try verifyPeer(request)
            let push = try RegisterPush(jsonBytes: request.body, maximumEntries: registers.maximumMergedRegisters)
            let report = registers.apply(push.entries, from: sender, path: push.repair ? .antiEntropy : .push)
            let reply = RegisterPushReply(applied: report.applied, stale: report.stale, rejected: report.rejected.map(\.name))
            return .json(200, reply.json)

        case .exchangeDigest:
            let sender = try verifyPeer(request)
            let exchange = try RegisterDigestRequest(jsonBytes: request.body, maximumEntries: registers.maximumMergedRegisters)
            let report = registers.apply(exchange.entries, from: sender, path: .antiEntropy)
            // The sender has the entries it sent, whether or not its digest lists them.
            var senderStamps = exchange.digest
            for entry in exchange.entries where senderStamps[entry.name].map({ $0 < entry.stamp }) ?? true {
                senderStamps[entry.name] = entry.stamp
            }
            let (newerHere, newerThere) = registers.difference(from: senderStamps)
            let reply = RegisterDigestReply(
                entries: GlobalRegisterStore.prefix(newerHere, maximumBytes: maximumReplyValueBytes), requested: newerThere,
                rejected: report.rejected.map(\.name))
            return .json(200, reply.json)

        case .exchangeRateLimitCounts:
            let sender = try verifyPeer(request)
            let message = try RateLimitCountsMessage(jsonBytes: request.body, maximumWindows: rateLimiter.counters.maximumWindows)
            return .json(200, rateLimiter.receiveCounts(message, from: sender).json)
        }
    }

    // MARK: Steps

    /// Checks an internal request's signature and sender, and returns the sender.
    private func verifyPeer(_ request: HTTPRequest) throws -> String {
        try Self.rejectQuery(request)
        guard PeerSignature.verify(request.header(PeerSignature.header), body: request.body, with: keyRing) else {
            throw GlobalStateError(
                .peerSignatureInvalid, subject: PeerSignature.header,
                "the request to \(request.path.prefix(80)) is not signed by a key this node has; sign the body with a key of the ring")
        }
        guard let sender = request.header(RegionNode.forwardedFromHeader), !sender.isEmpty else {
            throw RequestError(
                .missingField, field: RegionNode.forwardedFromHeader,
                detail: "an internal request must name its sender region in \(RegionNode.forwardedFromHeader)")
        }
        guard registers.peers.contains(sender) else {
            throw GlobalStateError(
                .unknownPeer, subject: sender,
                "\"\(sender.prefix(40))\" is not a peer region of \(region); the peers are \(registers.peers.joined(separator: ", "))")
        }
        return sender
    }

    private static func settingJSON(_ setting: RateLimitSetting, tenant: TenantID, stamp: RegisterStamp) -> JSONValue {
        .object([
            "tenant": .string(tenant.rawValue),
            "requestsPerWindow": .integer(setting.requestsPerWindow),
            "windowSeconds": .integer(setting.windowSeconds),
            "stamp": stamp.json,
        ])
    }

    /// Renders a check: 200 with the count when admitted, 429 problem+json
    /// with `Retry-After` when not.
    static func checkResponse(_ decision: RateLimiter.Decision, region: String) -> HTTPResponse {
        guard let setting = decision.setting, let window = decision.window, let count = decision.count else {
            return .json(200, .object(["admitted": .bool(true), "limit": .null]))
        }
        guard decision.admitted else {
            let retryAfter = decision.retryAfterSeconds ?? 1
            var problem = ProblemDetails(
                status: 429, type: "rate-limited", title: "Rate limit exceeded",
                detail:
                    "tenant \(decision.tenant) has used \(count) requests of its limit of \(setting.requestsPerWindow) in the \(setting.windowSeconds)-second window that started at \(window.startMilliseconds); retry after \(retryAfter) s",
                field: "tenant")
            problem.region = region
            return problem.response(headers: [("Retry-After", "\(retryAfter)")])
        }
        return .json(
            200,
            .object([
                "admitted": .bool(true),
                "count": .integer(count),
                "limit": .integer(setting.requestsPerWindow),
                "windowSeconds": .integer(setting.windowSeconds),
                "windowStart": .integer(window.startMilliseconds),
            ]))
    }

    private static func rejectBodyAndQuery(_ request: HTTPRequest) throws(RequestError) {
        try rejectQuery(request)
        guard request.body.isEmpty else {
            throw RequestError(
                .invalidValue, field: "body", detail: "\(request.method) \(request.path.prefix(200)) takes no body; send none")
        }
    }

    private static func rejectQuery(_ request: HTTPRequest) throws(RequestError) {
        guard let name = request.query.keys.sorted().first else { return }
        throw RequestError(
            .invalidQueryParameter, field: name,
            detail: "\(request.path.prefix(200)) takes no query parameters; remove \"\(name.prefix(40))\"")
    }
}
