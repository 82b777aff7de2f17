import Synchronization

/// The network between regions in the fault-injection harness. A request is
/// handed straight to the destination node's `handle`, the same entry point
/// the HTTP server calls, so every byte of the protocol runs as in the
/// server. Only delivery is simulated: cut links, crashed regions, lost
/// requests and responses, and internal messages delivered twice and late.
///
/// Every random choice comes from one seeded generator and the harness calls
/// it from one task, so a seed replays the same run.
public final class SimulatedNetwork: InterRegionTransport {
    /// Chances of each fault, from 0 to 1, applied to every message.
    public struct Faults: Sendable, Equatable {
        /// The request is lost before it reaches the destination.
        public var requestLoss = 0.0
        /// The destination acts, and its response is lost on the way back.
        public var responseLoss = 0.0
        /// An internal message (replication batch, reconcile request) is kept
        /// and delivered once more later, after messages sent after it.
        public var duplication = 0.0

        public init(requestLoss: Double = 0, responseLoss: Double = 0, duplication: Double = 0) {
            self.requestLoss = requestLoss
            self.responseLoss = responseLoss
            self.duplication = duplication
        }
    }

    /// Counts of the network's deliveries and faults, for the scenario's report.
    public struct Counters: Sendable, Equatable {
        public var delivered = 0
        public var lost = 0
        public var duplicated = 0
        public var refused = 0
    }

    /// A region crashes when a number of messages to one path have been delivered.
    private struct CrashTrigger {
        let region: String
        let path: String
        var remaining: Int
    }

    private struct State {
        var nodes: [String: RegionNode] = [:]
        var cutLinks: Set<RegionPair> = []
        var faults = Faults()
        var random: SplitMix64
        var held: [(destination: String, request: HTTPRequest)] = []
        var counters = Counters()
        var crashTrigger: CrashTrigger?
        var crashed: [String] = []
    }

    private let state: Mutex<State>

    public init(seed: UInt64) {
        state = Mutex(State(random: SplitMix64(seed: seed)))
    }

    /// Connects a region's node; it replaces the region's previous node.
    public func attach(_ node: RegionNode) {
        state.withLock { $0.nodes[node.region] = node }
    }

    /// Disconnects a region as a crash would: nothing reaches it or leaves it.
    public func detach(_ region: String) {
        state.withLock { $0.nodes[region] = nil }
    }

    public func isAttached(_ region: String) -> Bool {
        state.withLock { $0.nodes[region] != nil }
    }

    public func cut(_ first: String, _ second: String) {
        state.withLock { _ = $0.cutLinks.insert(RegionPair(first, second)) }
    }

    public func heal(_ first: String, _ second: String) {
        state.withLock { _ = $0.cutLinks.remove(RegionPair(first, second)) }
    }

    public func setFaults(_ faults: Faults) {
        state.withLock { $0.faults = faults }
    }

    public var counters: Counters { state.withLock { $0.counters } }

    /// Detaches `region` right after the `count`-th message it sent to `path`
    /// has been delivered: a crash in the middle of an exchange. The sender
    /// never gets the response, so its code stops there as a crashed
    /// process would.
    public func crash(_ region: String, afterDeliveries count: Int, to path: String) {
        state.withLock { $0.crashTrigger = CrashTrigger(region: region, path: path, remaining: count) }
    }

    /// Returns and clears the regions that a crash trigger detached.
    public func takeTriggeredCrashes() -> [String] {
        state.withLock { state in
            defer { state.crashed = [] }
            return state.crashed
        }
    }

    /// Delivers the kept duplicates whose destination is reachable, and drops the rest.
    public func deliverHeldDuplicates() async {
        let held = state.withLock { state in
            defer { state.held = [] }
            return state.held.compactMap { message in state.nodes[message.destination].map { ($0, message.request) } }
        }
        for (node, request) in held {
            _ = await node.handle(request)
        }
    }

    public func exchange(
        _ request: HTTPRequest, from source: String, to destination: String, extraHeaders: [(String, String)]
    ) async throws(ForwardingError) -> (response: HTTPResponse, inboundDelay: Duration) {
        var outgoing = HTTPRequest(method: request.method, path: request.path, query: request.query, body: request.body)
        for (name, value) in request.headers where name == "content-type" || name == "homeport-route" || name == "idempotency-key" {
            outgoing.headers[name] = value
        }
        for (name, value) in extraHeaders {
            outgoing.headers[name.lowercased()] = value
        }

        enum Decision {
            case refuse
            case loseRequest
            case deliver(RegionNode, loseResponse: Bool)
        }
        let decision = state.withLock { state -> Decision in
            guard state.nodes[source] != nil, let node = state.nodes[destination],
                !state.cutLinks.contains(RegionPair(source, destination))
            else {
                state.counters.refused += 1
                return .refuse
            }
            if Self.chance(state.faults.requestLoss, &state.random) {
                state.counters.lost += 1
                return .loseRequest
            }
            if request.path.hasPrefix("/internal/"), Self.chance(state.faults.duplication, &state.random) {
                state.held.append((destination, outgoing))
                state.counters.duplicated += 1
            }
            return .deliver(node, loseResponse: Self.chance(state.faults.responseLoss, &state.random))
        }

        switch decision {
        case .refuse:
            throw ForwardingError(
                .homeUnreachable, region: destination, "the simulated network has no route from \(source) to \(destination)")
        case .loseRequest:
            throw ForwardingError(.timedOut, region: destination, "the simulated network lost the request to \(destination)")
        case .deliver(let node, let loseResponse):
            let response = await node.handle(outgoing)
            let senderCrashed = state.withLock { state -> Bool in
                state.counters.delivered += 1
                guard var trigger = state.crashTrigger, trigger.path == request.path, trigger.region == source else { return false }
                trigger.remaining -= 1
                state.crashTrigger = trigger.remaining > 0 ? trigger : nil
                guard trigger.remaining == 0 else { return false }
                state.nodes[trigger.region] = nil
                state.crashed.append(trigger.region)
                return true
            }
            if senderCrashed {
                throw ForwardingError(.homeUnreachable, region: destination, "\(source) crashed after sending to \(destination)")
            }
            if loseResponse {
                state.withLock { $0.counters.lost += 1 }
                throw ForwardingError(.timedOut, region: destination, "the simulated network lost the response from \(destination)")
            }
            let relayed = InterRegionClient.relayedHeaders.compactMap { name in response.header(name).map { (name: name, value: $0) } }
            return (HTTPResponse(status: response.status, headers: relayed, body: response.body), .zero)
        }
    }

    private static func chance(_ probability: Double, _ random: inout SplitMix64) -> Bool {
        probability > 0 && Double(random.next() >> 11) / Double(1 << 53) < probability
    }
}
