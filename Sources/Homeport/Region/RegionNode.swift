import Foundation
import Synchronization

/// Settings of one region's node.
public struct RegionNodeConfiguration: Sendable {
    public var region: String
    public var http: HTTPServerConfiguration
    /// How long a routing token stays valid after it is issued.
    public var tokenLifetime: Duration = .seconds(24 * 3600)
    /// Decides which reads the neighbour may serve from its standby copy:
    /// kinds whose stale read is `invisible`, when the request sends
    /// `Homeport-Stale-Read: allow` or the row's `staleReadsAtNeighbour` is set.
    public var policy: PolicyTable = .defaultTable
    /// Sessions per request of a reconcile-forward (1 to 512).
    public var reconcileSessionsPerRequest = 512
    /// With `.consensus` the store is shared by every region, so the node
    /// serves every session itself and never forwards one.
    public var sessionPlacement: SessionPlacement = .homeRegion

    public init(region: String, http: HTTPServerConfiguration = HTTPServerConfiguration()) {
        self.region = region
        self.http = http
    }
}

/// One region's Homeport node: the HTTP API in front of the region's session
/// store.
///
/// For each session request the node verifies the routing token, then serves
/// it from its own store when the token names this region as home, or
/// forwards it in one hop to the home and relays the response. The token, not a
/// directory, decides where a session lives.
public final class RegionNode: Sendable {
    public static let routeHeader = "Homeport-Route"
    public static let servedByHeader = "Homeport-Served-By"
    public static let requestIDHeader = "Homeport-Request-Id"
    /// `allow` lets the neighbour serve a read of an `invisible`-staleness kind
    /// from its standby copy instead of paying the hop to the home.
    public static let staleReadHeader = "Homeport-Stale-Read"
    /// `standby` on a response served from a standby copy.
    public static let servedFromHeader = "Homeport-Served-From"
    /// Set on a forwarded request; a node that is not the home rejects such a
    /// request instead of forwarding it again.
    public static let forwardedFromHeader = "Homeport-Forwarded-From"
    /// Set when a forwarded request is forwarded once more because its home
    /// was taken over; a node never forwards such a request again.
    public static let takeoverHopHeader = "Homeport-Takeover-Hop"

    public let region: String
    public let configuration: RegionNodeConfiguration
    public let store: any SessionStore
    public let metrics: MetricsRegistry
    private let keyRing: TokenKeyRing
    private let peers: any InterRegionTransport
    private let clock: any WallClock
    private let logger: Logger
    private let sessions: SessionRequestHandler
    private let server: HTTPServer
    /// Ships this region's mutations to its neighbour; nil without a neighbour.
    public let replication: ReplicationShipper?
    /// The region's lease; while it is not valid, home sessions are not served.
    /// Nil runs without fencing (no linearizable store configured).
    public let leaseKeeper: RegionLeaseKeeper?
    /// Takes over failed neighbours' sessions; nil without a linearizable store.
    public let takeovers: TakeoverMonitor?
    /// The store of takeover records, read when a home cannot be reached.
    private let linearizableStore: (any LinearizableStore)?
    /// Components that serve the API's other routes (quotas, billing, global state).
    public let services: [any RegionService]
    /// Standby copies of the sessions of the regions this node is neighbour to, by home region.
    private let standbys: Mutex<[String: StandbyReplica]>
    /// When each home's last replication batch arrived, in milliseconds since the Unix epoch.
    private let lastBatchArrival = Mutex<[String: Int64]>([:])
    private let standbyConfiguration: StandbyReplica.Configuration
    /// The latest takeover record of this region, and the lease generation for
    /// which the node last checked for one (running reconcile-forward when
    /// one waited). Home sessions are served only when that generation is
    /// the lease keeper's current one.
    private let selfTakeover = Mutex<(record: TakeoverRecord?, checkedGeneration: Int)>((nil, 0))
    /// Runs `reconcileIfNeeded` while the node serves.
    private let maintenance = Mutex<Task<Void, Never>?>(nil)
    private let reconcileReports = Mutex<[ReconcileReport]>([])

    public init(
        configuration: RegionNodeConfiguration,
        store: any SessionStore,
        limits: SessionStoreLimits,
        keyRing: TokenKeyRing,
        peers: any InterRegionTransport,
        metrics: MetricsRegistry,
        clock: any WallClock,
        logger: Logger,
        replication: ReplicationShipper? = nil,
        leaseKeeper: RegionLeaseKeeper? = nil,
        takeovers: TakeoverMonitor? = nil,
        linearizableStore: (any LinearizableStore)? = nil,
        services: [any RegionService] = []
    ) {
        self.services = services
        self.takeovers = takeovers
        self.linearizableStore = linearizableStore
        self.region = configuration.region
        self.replication = replication
        self.leaseKeeper = leaseKeeper
        self.standbys = Mutex([:])
        self.standbyConfiguration = StandbyReplica.Configuration(limits: limits)
        self.configuration = configuration
        self.store = store
        self.keyRing = keyRing
        self.peers = peers
        self.metrics = metrics
        self.clock = clock
        self.logger = logger.with(["region": configuration.region])
        var sessions = SessionRequestHandler(store: store, limits: limits, clock: clock)
        sessions.checksTokenBeforeOperations = configuration.sessionPlacement == .homeRegion
        self.sessions = sessions

        let handler = NodeHandlerBox()
        self.server = HTTPServer(configuration: configuration.http, logger: self.logger) { request in
            guard let node = handler.node else {
                return ProblemDetails(
                    status: 503, type: "node-stopped", title: "Node stopped", detail: "this region's node is shutting down; retry"
                ).response()
            }
            return await node.handle(request)
        }
        handler.node = self
    }

    /// Starts listening, and with a lease keeper, a task that runs
    /// `reconcileIfNeeded` every 100 ms; returns the bound port.
    @discardableResult
    public func start() throws(HTTPServerError) -> UInt16 {
        let port = try server.start()
        if leaseKeeper != nil {
            maintenance.withLock { task in
                guard task == nil else { return }
                task = Task { [weak self] in
                    while !Task.isCancelled {
                        guard let self else { return }
                        await self.reconcileIfNeeded()
                        try? await self.clock.sleep(for: .milliseconds(100))
                    }
                }
            }
        }
        logger.info("region node started", ["port": "\(port)"])
        return port
    }

    public var port: UInt16 { server.port }

    public func shutdown() async {
        let task = maintenance.withLock { $0 }
        task?.cancel()
        await task?.value
        await server.shutdown()
        logger.info("region node stopped")
    }

    /// The reconcile-forward runs this node completed, oldest first.
    public var completedReconciles: [ReconcileReport] { reconcileReports.withLock { $0 } }

    /// Checks, once per lease generation and before the node serves on it,
    /// whether this region was taken over while it was away. If a takeover
    /// waits for its reconcile, ships every local session's tail to the
    /// region that took over, empties the local store and marks the record
    /// reconciled. Sessions stay with that region; tokens issued before the
    /// takeover are sent there from now on.
    ///
    /// Returns the report of a reconcile it ran. On a failure it logs and
    /// returns nil, and the node stays fenced until a later call succeeds.
    @discardableResult
    public func reconcileIfNeeded() async -> ReconcileReport? {
        guard let leaseKeeper, let linearizableStore else { return nil }
        let generation = leaseKeeper.generation
        guard generation > 0, selfTakeover.withLock({ $0.checkedGeneration }) != generation else { return nil }

        do {
            let key = TakeoverRecord.key(of: region)
            let stored = try await linearizableStore.get(key)
            var record = stored.flatMap { TakeoverRecord(bytes: $0.value) }
            var report: ReconcileReport?

            if var pending = record, let stored, pending.to != region, pending.reconciledAtMilliseconds == nil {
                logger.info("reconcile started", ["to": pending.to, "takenAt": "\(pending.takenAtMilliseconds)"])
                var forward = ReconcileForward(region: region, store: store, peers: peers, keyRing: keyRing)
                forward.sessionsPerChunk = max(1, min(ReconcileForward.sessionsPerRequest, configuration.reconcileSessionsPerRequest))
                let done = try await forward.run(to: pending.to)
                pending.reconciledAtMilliseconds = clock.nowMilliseconds()
                let result = try await linearizableStore.compareAndSwap(
                    key: key, expectedModRevision: stored.modRevision, newValue: pending.bytes)
                guard result.succeeded else {
                    throw ReconcileError(
                        .recordChanged, region: pending.to, "the takeover record of \(region) changed during the reconcile")
                }
                record = pending
                report = done
                reconcileReports.withLock { $0.append(done) }
                metrics.increment(
                    "homeport_reconciles_total", help: "Reconcile-forward runs completed by a returning region.",
                    labels: ["region": region, "to": pending.to])
                logger.info(
                    "reconcile finished",
                    [
                        "to": pending.to, "sessions": "\(done.sessions)", "recordsShipped": "\(done.recordsShipped)",
                        "recordsMerged": "\(done.recordsMerged)",
                    ])
            }

            // Tokens carry whole seconds: a session created in the second of
            // the takeover would look like one of the taken-over sessions.
            if let record, record.to != region {
                let wait = (record.takenAtMilliseconds / 1000 + 1) * 1000 - clock.nowMilliseconds()
                if wait > 0 { try await clock.sleep(for: .milliseconds(wait)) }
            }
            selfTakeover.withLock { $0 = (record, generation) }
            return report
        } catch {
            logger.warning("takeover check failed; the region stays fenced and tries again", ["error": "\(error)"])
            return nil
        }
    }

    /// Handles one request. It never throws, because every failure becomes a problem+json response.
    public func handle(_ request: HTTPRequest) async -> HTTPResponse {
        let started = ContinuousClock.now
        let requestID = Self.requestID(from: request)
        var labels = (kind: "api", operation: "unknown", path: "local")

        var response: HTTPResponse
        do {
            for service in services {
                guard let served = try await service.respond(to: request) else { continue }
                labels = (service.kind, request.method.lowercased(), "local")
                response = served
                response.headers.append((Self.servedByHeader, region))
                if response.header(Self.requestIDHeader) == nil { response.headers.append((Self.requestIDHeader, requestID)) }
                record(labels, status: response.status, seconds: (ContinuousClock.now - started).secondsValue)
                return response
            }

            let route = try APIRoute.parse(method: request.method, path: request.path)
            switch route {
            case .health:
                response = .json(200, .object(["status": .string("ok"), "region": .string(region)]))
                labels = ("api", "health", "local")
            case .metrics:
                response = HTTPResponse(
                    status: 200, headers: [("Content-Type", "text/plain; version=0.0.4")],
                    body: Array(metrics.renderPrometheus().utf8))
                labels = ("api", "metrics", "local")
            case .replicationBatch:
                labels = ("replication", "apply", "local")
                response = try applyReplicationBatch(request)
            case .reconcilePositions:
                labels = ("reconcile", "positions", "local")
                response = try await reconcilePositions(request)
            case .reconcileTails:
                labels = ("reconcile", "tails", "local")
                response = try await mergeReconcileTails(request)
            case .createSession(let tenant):
                labels = ("session", "create", "local")
                try requireLease()
                response = try await createSession(tenant: tenant, request: request)
            case .session(let tenant, let session, let operation):
                labels = (operation.kind, operation.name, "local")
                let token = try verifyToken(request, tenant: tenant, session: session)
                if configuration.sessionPlacement == .consensus {
                    response = await serveLocally(operation, session: session, token: token, request: request, requestID: requestID)
                } else if token.home == region {
                    if let record = selfTakeover.withLock({ $0.record }), record.covers(token) {
                        // This region came back after a takeover: the session now
                        // lives at the region that took it over.
                        labels.path = "forwarded"
                        response = try await forward(
                            request, to: record.to, requestID: requestID, session: session, followingTakeover: true)
                    } else {
                        response = await serveLocally(operation, session: session, token: token, request: request, requestID: requestID)
                    }
                } else if let current = try await homeSession(session), current.epoch > token.epoch {
                    // The session moved here after the token was issued (each
                    // move raises its epoch): a takeover, or a returning
                    // region's reconcile.
                    response = try await serveTakenOver(
                        operation, session: session, token: token, request: request, requestID: requestID, found: current)
                } else if let record = takeovers?.record(covering: token) {
                    response = try await serveTakenOver(
                        operation, session: session, token: token, request: request, requestID: requestID, record: record)
                } else if let standbyResponse = try standbyRead(operation, token: token, request: request) {
                    labels.path = "standby"
                    response = standbyResponse
                } else {
                    labels.path = "forwarded"
                    response = try await forwardFollowingTakeover(
                        request, operation: operation, session: session, token: token, requestID: requestID)
                }
            }
        } catch {
            response = problemResponse(for: error, request: request, requestID: requestID)
        }

        if response.header(Self.requestIDHeader) == nil {
            response.headers.append((Self.requestIDHeader, requestID))
        }
        record(labels, status: response.status, seconds: (ContinuousClock.now - started).secondsValue)
        return response
    }

    // MARK: Steps

    /// Serves a session request from this region's store, under the region's
    /// lease when it holds one.
    private func serveLocally(
        _ operation: SessionOperation, session: SessionID, token: RoutingToken, request: HTTPRequest, requestID: String
    ) async -> HTTPResponse {
        var response: HTTPResponse
        do {
            try requireLease()
            response = try await sessions.handle(operation, session: session, token: token, request: request)
        } catch {
            response = problemResponse(for: error, request: request, requestID: requestID)
        }
        response.headers.append((Self.servedByHeader, region))
        return response
    }

    private func createSession(tenant: TenantID, request: HTTPRequest) async throws -> HTTPResponse {
        guard request.query.isEmpty else {
            throw RequestError(
                .invalidQueryParameter, field: request.query.keys.sorted().first, detail: "creating a session takes no query parameters")
        }
        // An empty body or an empty object; no fields are defined yet.
        if !request.body.isEmpty {
            try JSONObjectReader.parseBody(request.body).finish()
        }

        let session = try SessionID.random()
        let now = clock.nowMilliseconds()
        let info = try await store.createSession(session, tenant: tenant, home: region, epoch: 1, nowMilliseconds: now)
        let token = RoutingToken(
            session: session, tenant: tenant, home: region, epoch: info.epoch, issuedAt: now / 1000,
            expiresAt: now / 1000 + configuration.tokenLifetime.wholeMilliseconds / 1000)
        let signed = keyRing.sign(token)

        logger.debug("session created", ["session": session.rawValue, "tenant": tenant.rawValue, "epoch": "\(info.epoch)"])
        var body = SessionJSON.session(info)
        if case .object(var fields) = body {
            fields["token"] = .string(signed)
            fields["tokenExpiresAt"] = .integer(token.expiresAt)
            body = .object(fields)
        }
        return .json(201, body, headers: [(Self.routeHeader, signed), (Self.servedByHeader, region)])
    }

    /// Forwards to the session's home. When the home cannot be reached or has
    /// fenced itself, and a takeover record names a new home, it goes there
    /// instead, or serves here if this region is the new home.
    private func forwardFollowingTakeover(
        _ request: HTTPRequest, operation: SessionOperation, session: SessionID, token: RoutingToken, requestID: String
    ) async throws -> HTTPResponse {
        let response: HTTPResponse
        do {
            response = try await forward(request, to: token.home, requestID: requestID, session: session)
        } catch let error as ForwardingError {
            guard error.code == .homeUnreachable || error.code == .timedOut, let record = try await takeoverRecord(of: token.home)
            else { throw error }
            return try await follow(record, request, operation: operation, session: session, token: token, requestID: requestID)
        }

        // A home that fenced itself responds 503, so it may have been taken over.
        guard response.status == 503, let record = try await takeoverRecord(of: token.home) else { return response }
        return try await follow(record, request, operation: operation, session: session, token: token, requestID: requestID)
    }

    private func follow(
        _ record: TakeoverRecord, _ request: HTTPRequest, operation: SessionOperation, session: SessionID, token: RoutingToken,
        requestID: String
    ) async throws -> HTTPResponse {
        guard record.covers(token) else {
            throw ForwardingError(
                .homeUnreachable, region: token.home,
                "the home region \"\(token.home)\" could not be reached, and the session was created after its last takeover; retry with the same idempotency key"
            )
        }
        if record.to == region {
            return try await serveTakenOver(
                operation, session: session, token: token, request: request, requestID: requestID, record: record)
        }
        do {
            return try await forward(request, to: record.to, requestID: requestID, session: session, followingTakeover: true)
        } catch let error as ForwardingError where error.code == .homeUnreachable || error.code == .timedOut {
            throw SessionUnavailableError(session: session, failedHome: token.home, unreachableNewHome: record.to)
        }
    }

    private func takeoverRecord(of home: String) async throws -> TakeoverRecord? {
        guard let linearizableStore else { return nil }
        return try await linearizableStore.get(TakeoverRecord.key(of: home)).flatMap { TakeoverRecord(bytes: $0.value) }
    }

    /// Returns the session's info when this region's store has it as its
    /// home, or nil. A store has a session as home only while the region
    /// serves it, because a region that was taken over empties its store
    /// when it returns.
    private func homeSession(_ session: SessionID) async throws -> SessionInfo? {
        do {
            let info = try await store.sessionInfo(session)
            return info.home == region ? info : nil
        } catch {
            guard error.code == .sessionNotFound else { throw error }
            return nil
        }
    }

    /// Serves a session that lives here although the token names another
    /// home: `found` when the store has it already, or else a session of a
    /// region this one took over (`record`), which its first request here
    /// adopts from the standby copy at the next epoch. Every response carries
    /// the session's new routing token, because the client's token still
    /// names the old home.
    ///
    /// If this region was itself taken over after `record`, whatever it had
    /// adopted then has moved on with its own sessions, and its standby copy
    /// is stale: the request goes to the region that took this one over.
    private func serveTakenOver(
        _ operation: SessionOperation, session: SessionID, token: RoutingToken, request: HTTPRequest, requestID: String,
        found: SessionInfo? = nil, record: TakeoverRecord? = nil
    ) async throws -> HTTPResponse {
        try requireLease()

        var info: SessionInfo
        if let found {
            info = found
        } else if let current = try await homeSession(session) {
            info = current
        } else {
            if let record, let own = selfTakeover.withLock({ $0.record }), own.to != region,
                own.takenAtMilliseconds > record.takenAtMilliseconds
            {
                return try await forward(request, to: own.to, requestID: requestID, session: session, followingTakeover: true)
            }
            guard let copy = standbySession(session, home: token.home), copy.tenant == token.tenant else {
                throw SessionUnavailableError(session: session, failedHome: token.home)
            }
            // Any copy may lack the failed home's last writes.
            info = try await store.adopt(copy, home: region, epoch: copy.epoch + 1, replicationGap: true)
            logger.info("session re-homed", ["session": session.rawValue, "from": token.home, "epoch": "\(info.epoch)"])
        }
        guard info.tenant == token.tenant else {
            throw RoutingTokenError(.tenantMismatch, "session \(session) belongs to another tenant than the token names")
        }

        let now = clock.nowMilliseconds()
        let rehomed = RoutingToken(
            session: session, tenant: token.tenant, home: region, epoch: info.epoch, issuedAt: now / 1000,
            expiresAt: now / 1000 + configuration.tokenLifetime.wholeMilliseconds / 1000)
        var response = try await sessions.handle(operation, session: session, token: rehomed, request: request)
        response.headers.append((Self.routeHeader, keyRing.sign(rehomed)))
        response.headers.append((Self.servedByHeader, region))
        if info.replicationGap {
            // The copy may lack the failed home's unreplicated tail.
            response.headers.append(("Homeport-Replication-Gap", "true"))
        }
        return response
    }

    /// Throws `RegionFencedError` unless the region holds a valid lease and
    /// has checked for a takeover since it was granted.
    private func requireLease() throws(RegionFencedError) {
        guard let leaseKeeper else { return }
        let generation = leaseKeeper.generation
        guard leaseKeeper.canServe(), selfTakeover.withLock({ $0.checkedGeneration }) == generation else {
            throw RegionFencedError(region: region)
        }
    }

    /// Checks an internal request from another region: its peer signature,
    /// and the region it names in `Homeport-Forwarded-From`, which it returns.
    private func verifyPeer(_ request: HTTPRequest, purpose: String) throws -> String {
        guard PeerSignature.verify(request.header(PeerSignature.header), body: request.body, with: keyRing) else {
            throw RoutingTokenError(.badSignature, "the \(purpose) is not signed by a key this node has")
        }
        guard let home = request.header(Self.forwardedFromHeader), home != region, RegionTopology.isValidName(home) else {
            throw RequestError(
                .invalidValue, field: Self.forwardedFromHeader,
                detail: "a \(purpose) must name its home region in \(Self.forwardedFromHeader)")
        }
        return home
    }

    /// Responds to a returning region with, for each session it lists, the
    /// position of that region's writes this node has, from the adopted session or
    /// else the standby copy. Sessions this node has no copy of are left out.
    private func reconcilePositions(_ request: HTTPRequest) async throws -> HTTPResponse {
        let home = try verifyPeer(request, purpose: "reconcile request")
        try requireTakenOver(home)

        var body = try JSONObjectReader.parseBody(request.body)
        var ids: [SessionID] = []
        for (index, element) in try body.array("sessions", maximumCount: ReconcileForward.sessionsPerRequest).enumerated() {
            guard case .string(let text) = element, let id = SessionID(text) else {
                throw RequestError(
                    .invalidValue, field: "sessions[\(index)]", detail: "must be a session id (\(SessionID.allowedCharactersDescription))")
            }
            ids.append(id)
        }
        try body.finish()

        let adopted = try await store.adoptedPositions(ids)
        var positions: [String: JSONValue] = [:]
        for id in ids {
            guard let stamp = adopted[id] ?? standbyPosition(of: id, home: home)?.appliedStamp else { continue }
            positions[id.rawValue] = .object(["epoch": .integer(Int64(stamp.epoch)), "seq": .integer(Int64(stamp.seq))])
        }
        return .json(200, .object(["positions": .object(positions)]))
    }

    /// Merges a returning region's tails into the sessions this node took
    /// over from it, adopting those not adopted yet.
    private func mergeReconcileTails(_ request: HTTPRequest) async throws -> HTTPResponse {
        let home = try verifyPeer(request, purpose: "reconcile request")
        try requireTakenOver(home)

        var body = try JSONObjectReader.parseBody(request.body)
        var tails: [ReconcileTail] = []
        for element in try ReplicationJSON.objects("tails", in: &body) {
            let tail = try ReconcileTail(element)
            guard tail.home == home else {
                throw element.invalidValue("home", "is \"\(tail.home)\", but the request comes from \(home)")
            }
            tails.append(tail)
        }
        try body.finish()

        var merged = 0
        for tail in tails {
            // Every session is adopted here, in the store and its log, even
            // with an empty tail: the returning region deletes its own copy
            // next, and a standby copy is not durable.
            let standby = standbySession(tail.session, home: home)
            merged += try await store.mergeReconcileTail(tail, standby: standby, home: region)
        }
        metrics.increment(
            "homeport_reconciled_records_total", help: "Records of a returning region's tails that changed a session here.",
            labels: ["region": region, "from": home], by: Double(merged))
        logger.info("reconcile tails merged", ["from": home, "sessions": "\(tails.count)", "recordsMerged": "\(merged)"])
        return .json(200, .object(["merged": .integer(Int64(merged)), "sessions": .integer(Int64(tails.count))]))
    }

    private func requireTakenOver(_ home: String) throws(ReconcileError) {
        guard let record = takeovers?.record(of: home) else {
            throw ReconcileError(
                .notTakenOver, region: home, "\(region) has not taken over \(home); read the takeover record and ask the region it names")
        }
        // NOTE: a region taken over after it took `home` over has handed what
        // it adopted to its own successor, so merging here could fork those
        // sessions. The returning region stays fenced and retries; chains of
        // takeovers need an operator until records can move along the chain.
        if let own = selfTakeover.withLock({ $0.record }), own.to != region, own.takenAtMilliseconds > record.takenAtMilliseconds {
            throw ReconcileError(
                .notTakenOver, region: home,
                "\(region) was itself taken over by \(own.to) after it took \(home) over, so it cannot merge \(home)'s sessions")
        }
    }

    /// Applies a batch from a home region to its standby copies and returns the acknowledgement.
    private func applyReplicationBatch(_ request: HTTPRequest) throws -> HTTPResponse {
        let home = try verifyPeer(request, purpose: "replication batch")
        let batch: ReplicationBatch
        do {
            batch = try ReplicationBatch(jsonBytes: request.body)
        } catch {
            throw RequestError(.invalidValue, field: error.field, detail: "the replication batch is invalid: \(error)")
        }

        let empty = try StandbyReplica(home: home, configuration: standbyConfiguration)
        let now = clock.nowMilliseconds()
        lastBatchArrival.withLock { $0[home] = now }
        let acknowledgement = standbys.withLock { standbys in
            var replica = standbys[home] ?? empty
            standbys[home] = nil
            defer { standbys[home] = replica }
            return replica.apply(batch)
        }
        return .json(200, acknowledgement.json)
    }

    /// Serves a read from this node's standby copy when the policy and the
    /// request allow it and the copy exists; returns nil to forward instead.
    ///
    /// The response states how stale it may be: the copy's position, the
    /// home's last reported position, whether a gap is known, and how long ago
    /// the home's last batch arrived.
    private func standbyRead(_ operation: SessionOperation, token: RoutingToken, request: HTTPRequest) throws -> HTTPResponse? {
        guard request.header(Self.forwardedFromHeader) == nil, case .readTurns = operation,
            let row = configuration.policy.row(for: operation.kind), row.staleReadCost == .invisible,
            row.staleReadsAtNeighbour || request.header(Self.staleReadHeader)?.lowercased() == "allow"
        else { return nil }

        let selection = try sessions.parseTurnSelection(request.query)
        guard request.body.isEmpty else { return nil }
        let found = standbys.withLock { standbys -> (StandbySession, StandbyReplica.Position)? in
            guard let replica = standbys[token.home], let copy = replica.session(token.session),
                let position = replica.position(of: token.session)
            else { return nil }
            return (copy, position)
        }
        guard let (copy, position) = found, copy.tenant == token.tenant, copy.epoch == token.epoch else { return nil }

        let turns: [Turn]
        switch selection {
        case .all: turns = copy.turns
        case .tail(let count): turns = Array(copy.turns.suffix(count))
        case .since(let seq): turns = copy.turns.filter { $0.stamp.seq > seq }
        }
        let age = clock.nowMilliseconds() - (lastBatchArrival.withLock { $0[token.home] } ?? 0)
        var standby: [String: JSONValue] = [
            "region": .string(region),
            "appliedSeq": .integer(Int64(position.appliedStamp.seq)),
            "replicationGap": .bool(position.replicationGap),
            "lastBatchAgeMilliseconds": .integer(max(0, age)),
        ]
        if let homeLastSeq = position.homeLastSeq { standby["homeLastSeq"] = .integer(Int64(homeLastSeq)) }
        let body: JSONValue = .object([
            "turns": .array(turns.map(SessionJSON.turn)),
            "epoch": .integer(Int64(copy.epoch)),
            "lastSeq": .integer(Int64(copy.appliedSeq)),
            "turnCount": .integer(Int64(copy.turns.count)),
            "standby": .object(standby),
        ])
        return .json(200, body, headers: [(Self.servedByHeader, region), (Self.servedFromHeader, "standby")])
    }

    /// Returns the position of this node's standby copy of a session of `home`, if it has one.
    public func standbyPosition(of session: SessionID, home: String) -> StandbyReplica.Position? {
        standbys.withLock { $0[home]?.position(of: session) }
    }

    /// Returns this node's standby copy of a session of `home`, if it has one.
    public func standbySession(_ session: SessionID, home: String) -> StandbySession? {
        standbys.withLock { $0[home]?.session(session) }
    }

    private func verifyToken(_ request: HTTPRequest, tenant: TenantID, session: SessionID) throws(RoutingTokenError) -> RoutingToken {
        guard let text = request.header(Self.routeHeader), !text.isEmpty else {
            throw RoutingTokenError(
                .missing, "the \(Self.routeHeader) header is missing; send the token returned when the session was created")
        }
        let token = try keyRing.verify(text, nowSeconds: clock.nowMilliseconds() / 1000)
        guard token.tenant == tenant else {
            throw RoutingTokenError(.tenantMismatch, "the routing token is for another tenant than \(tenant)")
        }
        guard token.session == session else {
            throw RoutingTokenError(.sessionMismatch, "the routing token is for another session than \(session)")
        }
        return token
    }

    /// The maximum number of hops a request takes along takeover records
    /// after its first forward, which is the longest chain of takeovers served.
    static let maximumTakeoverHops = 3

    /// Forwards to `home`. A request that another region forwarded here is
    /// forwarded again only when `followingTakeover`, and at most
    /// `maximumTakeoverHops` times.
    private func forward(
        _ request: HTTPRequest, to home: String, requestID: String, session: SessionID, followingTakeover: Bool = false
    ) async throws -> HTTPResponse {
        let hops = request.header(Self.takeoverHopHeader).flatMap { Int($0) } ?? 0
        if let origin = request.header(Self.forwardedFromHeader), !followingTakeover || hops >= Self.maximumTakeoverHops {
            throw ForwardingError(
                .forwardingLoop, region: home,
                "the request was forwarded here by \(origin.prefix(32)) after \(hops) takeover hops, but this region (\(region)) is not the home \(home); the regions disagree about where the session lives"
            )
        }
        var headers = [(Self.forwardedFromHeader, region), (Self.requestIDHeader, requestID)]
        if followingTakeover { headers.append((Self.takeoverHopHeader, "\(hops + 1)")) }
        let response = try await peers.send(request, from: region, to: home, extraHeaders: headers)
        metrics.increment(
            "homeport_forwarded_total", help: "Session requests forwarded to their home region that got a response from it.",
            labels: ["region": region, "home": home])
        return response
    }

    private func problemResponse(for error: any Error, request: HTTPRequest, requestID: String) -> HTTPResponse {
        var problem = ProblemDetails.from(error)
        problem.region = region
        problem.requestID = requestID

        var metadata = ["request": requestID, "method": request.method, "status": "\(problem.status)", "type": problem.type]
        if let session = Self.sessionSegment(of: request.path) { metadata["session"] = session }
        if problem.status == 503 || problem.status == 504 {
            // A region that is down, fenced or taken over: expected during a
            // failover, counted in the metrics, and retried by clients.
            metadata["error"] = String(describing: error)
            logger.info("request unavailable", metadata)
        } else if problem.status >= 500 {
            metadata["error"] = String(describing: error)
            logger.error("request failed", metadata)
        } else {
            logger.debug("request rejected", metadata)
        }
        return problem.response()
    }

    private func record(_ labels: (kind: String, operation: String, path: String), status: Int, seconds: Double) {
        metrics.observe(
            "homeport_operation_duration_seconds",
            help: "Time to respond to an API request, by state kind, operation and path (local or forwarded).",
            labels: ["region": region, "kind": labels.kind, "operation": labels.operation, "path": labels.path], seconds: seconds)
        metrics.increment(
            "homeport_requests_total", help: "API requests completed, by response status.",
            labels: ["region": region, "kind": labels.kind, "operation": labels.operation, "path": labels.path, "status": "\(status)"])
        if status >= 400 {
            metrics.increment(
                "homeport_errors_total", help: "API requests completed with a 4xx or 5xx status.",
                labels: ["region": region, "kind": labels.kind, "operation": labels.operation, "class": status >= 500 ? "5xx" : "4xx"])
        }
    }

    private static func requestID(from request: HTTPRequest) -> String {
        if let given = request.header(requestIDHeader), SessionID.isValid(given) {
            return given
        }
        let bytes = (try? SecureRandom.bytes(count: 9)) ?? Array(repeating: 0, count: 9)
        return Base64URL.encode(bytes)
    }

    /// Returns the session id of a session path for logs, or nil when the path has none or it is invalid.
    private static func sessionSegment(of path: String) -> String? {
        let segments = path.split(separator: "/")
        guard segments.count >= 5, segments[0] == "v1", SessionID.isValid(String(segments[4])) else { return nil }
        return String(segments[4])
    }
}

/// Lets the server's handler closure reach the node that owns the server
/// without a retain cycle. Set once, right after both are built and before
/// `start()`, and only read after that.
private final class NodeHandlerBox: @unchecked Sendable {
    weak var node: RegionNode?
}
