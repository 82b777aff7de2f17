/// The eventually-global tier as a region's node serves it: global
/// registers, rate limits, and their exchanges with the other regions.
public struct GlobalStateService: RegionService {
    public let node: GlobalStateNode

    public init(node: GlobalStateNode) {
        self.node = node
    }

    public var kind: String { "global_state" }

    public func respond(to request: HTTPRequest) async throws -> HTTPResponse? {
        await node.handler.respond(to: request)
    }

    /// Starts the loops; the first anti-entropy round runs at once, so a
    /// restarted node learns the other regions' registers within a round trip.
    public func start() async {
        node.start()
    }

    public func stop() async {
        await node.stop()
    }
}

/// Exactly-once billing as a region's node serves it: usage records and
/// linearizable totals, with the periodic flush to the linearizable store.
public struct BillingService: RegionService {
    public let recorder: BillingRecorder
    private let handler: BillingRequestHandler

    public init(recorder: BillingRecorder) {
        self.recorder = recorder
        self.handler = BillingRequestHandler(recorder: recorder)
    }

    public var kind: String { "billing_counter" }

    public func respond(to request: HTTPRequest) async throws -> HTTPResponse? {
        guard let route = try BillingRequestHandler.route(method: request.method, path: request.path) else { return nil }
        return try await handler.handle(route, request: request)
    }

    public func start() async {
        recorder.start()
    }

    public func stop() async {
        await recorder.stop()
    }
}

/// Usage quotas as a region's node serves them: reservations from the
/// region's lease chunk, with the chunk's lease renewed and its usage
/// settled in the background.
public struct QuotaRegionService: RegionService {
    public let service: QuotaService
    private let handler: QuotaRequestHandler

    public init(service: QuotaService) {
        self.service = service
        self.handler = QuotaRequestHandler(service: service)
    }

    public var kind: String { "usage_quota" }

    public func respond(to request: HTTPRequest) async throws -> HTTPResponse? {
        guard let route = try QuotaRequestHandler.route(method: request.method, path: request.path) else { return nil }
        return try await handler.handle(route, request: request)
    }

    /// Takes the quota lease first: a reservation before it would be denied.
    public func start() async {
        await service.step()
        service.start()
    }

    public func stop() async {
        await service.stop()
    }
}
