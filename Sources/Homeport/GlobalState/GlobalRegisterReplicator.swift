import Synchronization

/// Spreads one region's global registers to the other regions: the shell
/// around `GlobalRegisterStore` that performs its pushes and anti-entropy.
///
/// - Push: after a local write, each peer gets the writes it has not
///   acknowledged, in one `POST /internal/v1/registers/push`, with up to
///   `maximumPushesInFlight` pushes in flight per peer. A failed push is not
///   retried by itself; the writes stay unacknowledged.
/// - Anti-entropy: every `antiEntropyInterval`, the node sends each peer
///   `POST /internal/v1/registers/digest` with the name and stamp of every
///   register plus the writes that peer has not acknowledged. The peer
///   merges those, replies with its entries that are newer or missing at the
///   sender, and names the registers where the sender is newer, which the
///   sender then pushes as repairs.
///
/// So after a partition heals, every region has every other region's writes
/// within one anti-entropy interval plus the one-way delay between them
/// (each region resends its unacknowledged writes in its next round). An
/// entry that reached a region only through a third one is repaired by the
/// digest instead, within an interval plus a round trip.
///
/// Every message is signed with `PeerSignature` and names its sender in
/// `Homeport-Forwarded-From`. For deterministic tests, `pushUnacknowledged(to:)`
/// and `exchangeDigest(with:)` run one step against one peer; `start()` runs
/// both on their own.
public final class GlobalRegisterReplicator: Sendable {
    public static let pushPath = "/internal/v1/registers/push"
    public static let digestPath = "/internal/v1/registers/digest"

    public struct Configuration: Sendable, Equatable {
        /// Time between the starts of two anti-entropy rounds. Default 1 s.
        public var antiEntropyInterval: Duration
        /// Register values sent in one message, in bytes of JSON; a message
        /// carries at least one entry. Default 4 MiB, well inside the 64 MiB
        /// default body limit of internal routes.
        public var maximumMessageValueBytes: Int

        public init(antiEntropyInterval: Duration = .seconds(1), maximumMessageValueBytes: Int = 4 << 20) {
            self.antiEntropyInterval = antiEntropyInterval
            self.maximumMessageValueBytes = maximumMessageValueBytes
        }

        public func validate() throws(ConfigurationError) {
            guard antiEntropyInterval >= .milliseconds(10), antiEntropyInterval <= .seconds(3600) else {
                throw ConfigurationError(
                    field: "antiEntropyInterval", detail: "must be from 10 ms to 1 hour, got \(antiEntropyInterval)")
            }
            guard (1...(32 << 20)).contains(maximumMessageValueBytes) else {
                throw ConfigurationError(
                    field: "maximumMessageValueBytes", detail: "must be from 1 to 33554432 bytes, got \(maximumMessageValueBytes)")
            }
        }
    }

    private struct Loops {
        var running = false
        var tasks: [Task<Void, Never>] = []
        /// Pushes in flight, by peer.
        var pushesInFlight: [String: Int] = [:]
        /// Peers with a local write that no push in flight carries yet.
        var pushPending: Set<String> = []
        /// Push tasks in flight, by id, so `stop()` can wait for them.
        var pushTasks: [UInt64: Task<Void, Never>] = [:]
        var nextPushID: UInt64 = 0
    }

    /// Pushes that may be in flight to one peer at once. More than one keeps
    /// a write from waiting for the previous push's round trip; since merging
    /// is idempotent, overlapping pushes are harmless.
    static let maximumPushesInFlight = 4

    public let store: GlobalRegisterStore
    public let configuration: Configuration
    private let transport: any InterRegionTransport
    private let keyRing: TokenKeyRing
    private let clock: any WallClock
    private let metrics: MetricsRegistry
    private let logger: Logger
    /// Failed exchanges in a row, per peer, to log a run of failures once.
    private let failuresInRow = Mutex<[String: Int]>([:])
    private let loops = Mutex(Loops())

    public init(
        store: GlobalRegisterStore, configuration: Configuration = Configuration(), transport: any InterRegionTransport,
        keyRing: TokenKeyRing, clock: any WallClock, metrics: MetricsRegistry, logger: Logger
    ) throws(ConfigurationError) {
        try configuration.validate()
        self.store = store
        self.configuration = configuration
        self.transport = transport
        self.keyRing = keyRing
        self.clock = clock
        self.metrics = metrics
        self.logger = logger.with(["region": store.region])
    }

    public var region: String { store.region }

    // MARK: Steps

    /// Sends `peer` the local writes it has not acknowledged, if any, and
    /// records the ones it stored. Returns false when the push failed.
    @discardableResult
    public func pushUnacknowledged(to peer: String) async -> Bool {
        let entries = store.unacknowledgedEntries(for: peer, maximumBytes: configuration.maximumMessageValueBytes)
        guard !entries.isEmpty else { return true }

        do {
            let reply = try await push(entries, to: peer, repair: false)
            acknowledge(entries, rejected: reply.rejected, by: peer)
            succeeded(peer, kind: "push")
            return true
        } catch {
            failed(peer, kind: "push", error)
            return false
        }
    }

    /// Runs one anti-entropy exchange with `peer`: sends the digest and the
    /// writes `peer` has not acknowledged, merges the entries it replies
    /// with, and pushes the ones it requests. Returns false when a message failed.
    @discardableResult
    public func exchangeDigest(with peer: String) async -> Bool {
        let entries = store.unacknowledgedEntries(for: peer, maximumBytes: configuration.maximumMessageValueBytes)
        let request = RegisterDigestRequest(digest: store.digest(), entries: entries)

        do {
            let body = try await send(request.json, path: Self.digestPath, to: peer)
            let reply: RegisterDigestReply
            do {
                reply = try RegisterDigestReply(jsonBytes: body, maximumEntries: maximumEntries)
            } catch {
                throw ExchangeFailure(detail: "the digest reply is invalid: \(error)")
            }
            acknowledge(entries, rejected: reply.rejected, by: peer)
            store.apply(reply.entries, from: peer, path: .antiEntropy)

            let requested = GlobalRegisterStore.prefix(
                store.entries(named: reply.requested), maximumBytes: configuration.maximumMessageValueBytes)
            if !requested.isEmpty {
                let pushReply = try await push(requested, to: peer, repair: true)
                acknowledge(requested, rejected: pushReply.rejected, by: peer)
            }
            succeeded(peer, kind: "digest")
            return true
        } catch {
            failed(peer, kind: "digest", error)
            return false
        }
    }

    /// Pushes to every peer at once and returns when every push has succeeded or failed.
    public func pushToAllPeers() async {
        await withTaskGroup(of: Void.self) { group in
            for peer in store.peers {
                group.addTask { await self.pushUnacknowledged(to: peer) }
            }
        }
    }

    /// Runs an anti-entropy exchange with every peer at once.
    public func runAntiEntropyRound() async {
        await withTaskGroup(of: Void.self) { group in
            for peer in store.peers {
                group.addTask { await self.exchangeDigest(with: peer) }
            }
        }
    }

    // MARK: Loops

    /// Starts pushing after each local write and the anti-entropy loop,
    /// whose first round runs at once.
    public func start() {
        loops.withLock { loops in
            guard !loops.running else { return }
            loops.running = true
            loops.tasks.append(Task { await self.dispatchLocalWrites() })
            loops.tasks.append(Task { await self.runAntiEntropyLoop() })
        }
        logger.info(
            "global register replication started",
            [
                "peers": store.peers.joined(separator: ","),
                "antiEntropyIntervalMilliseconds": "\(configuration.antiEntropyInterval.wholeMilliseconds)",
            ])
    }

    /// Stops the loops and waits for them and for the pushes in flight,
    /// each of which finishes or fails first.
    public func stop() async {
        let (tasks, pushTasks) = loops.withLock { loops in
            loops.running = false
            loops.pushPending = []
            defer { loops.tasks = [] }
            return (loops.tasks, Array(loops.pushTasks.values))
        }
        for task in tasks { task.cancel() }
        for task in tasks + pushTasks { await task.value }
        logger.info("global register replication stopped")
    }

    private func dispatchLocalWrites() async {
        while !Task.isCancelled {
            await store.waitForLocalWrite()
            guard !Task.isCancelled else { return }
            for peer in store.peers {
                requestPush(to: peer)
            }
        }
    }

    /// Starts a push to `peer`, or, with the most pushes in flight, marks one
    /// to start when a push finishes.
    private func requestPush(to peer: String) {
        let id = loops.withLock { loops -> UInt64? in
            guard loops.running else { return nil }
            guard loops.pushesInFlight[peer, default: 0] < Self.maximumPushesInFlight else {
                loops.pushPending.insert(peer)
                return nil
            }
            return Self.reservePush(to: peer, &loops)
        }
        if let id { launchPush(id, to: peer) }
    }

    private static func reservePush(to peer: String, _ loops: inout Loops) -> UInt64 {
        loops.pushesInFlight[peer, default: 0] += 1
        loops.nextPushID += 1
        return loops.nextPushID
    }

    private func launchPush(_ id: UInt64, to peer: String) {
        loops.withLock { loops in
            loops.pushTasks[id] = Task {
                await self.pushUnacknowledged(to: peer)
                self.pushFinished(id, to: peer)
            }
        }
    }

    private func pushFinished(_ id: UInt64, to peer: String) {
        let next = loops.withLock { loops -> UInt64? in
            loops.pushTasks[id] = nil
            loops.pushesInFlight[peer, default: 1] -= 1
            guard loops.running, loops.pushPending.remove(peer) != nil else { return nil }
            return Self.reservePush(to: peer, &loops)
        }
        if let next { launchPush(next, to: peer) }
    }

    private func runAntiEntropyLoop() async {
        while !Task.isCancelled {
            let started = clock.nowMilliseconds()
            await runAntiEntropyRound()
            let wait = started + configuration.antiEntropyInterval.wholeMilliseconds - clock.nowMilliseconds()
            do {
                try await clock.sleep(for: .milliseconds(max(1, wait)))
            } catch {
                return
            }
        }
    }

    // MARK: Messages

    private var maximumEntries: Int { store.maximumMergedRegisters }

    private func push(_ entries: [GlobalRegisterEntry], to peer: String, repair: Bool) async throws -> RegisterPushReply {
        let body = try await send(RegisterPush(entries: entries, repair: repair).json, path: Self.pushPath, to: peer)
        do {
            return try RegisterPushReply(jsonBytes: body, maximumEntries: maximumEntries)
        } catch {
            throw ExchangeFailure(detail: "the push reply is invalid: \(error)")
        }
    }

    /// Sends a signed internal request and returns the body of its 200 response.
    private func send(_ message: JSONValue, path: String, to peer: String) async throws -> [UInt8] {
        let body = message.serializedBytes()
        let request = HTTPRequest(method: "POST", path: path, headers: ["content-type": "application/json"], body: body)
        let headers = [(PeerSignature.header, PeerSignature.sign(body, with: keyRing)), (RegionNode.forwardedFromHeader, region)]
        let response = try await transport.send(request, from: region, to: peer, extraHeaders: headers)
        guard response.status == 200 else {
            throw ExchangeFailure(
                detail: "\(peer) answered \(response.status): \(String(decoding: response.body.prefix(300), as: UTF8.self))")
        }
        return response.body
    }

    private func acknowledge(_ sent: [GlobalRegisterEntry], rejected: [String], by peer: String) {
        let rejectedNames = Set(rejected)
        store.acknowledge(sent.filter { !rejectedNames.contains($0.name) }, by: peer)
        if let first = rejected.first {
            logger.warning(
                "peer rejected global register entries", ["peer": peer, "register": first, "count": "\(rejected.count)"])
        }
    }

    private func succeeded(_ peer: String, kind: String) {
        let previousFailures = failuresInRow.withLock { $0.removeValue(forKey: peer) ?? 0 }
        if previousFailures > 0 {
            logger.info("global register exchange recovered", ["peer": peer, "failedInRow": "\(previousFailures)"])
        }
        metrics.increment(
            "homeport_register_exchanges_total", help: "Global register pushes and anti-entropy exchanges sent, by outcome.",
            labels: ["region": region, "peer": peer, "kind": kind, "outcome": "ok"])
    }

    private func failed(_ peer: String, kind: String, _ error: any Error) {
        let failures = failuresInRow.withLock { failures in
            failures[peer, default: 0] += 1
            return failures[peer]!
        }
        metrics.increment(
            "homeport_register_exchanges_total", help: "Global register pushes and anti-entropy exchanges sent, by outcome.",
            labels: ["region": region, "peer": peer, "kind": kind, "outcome": "failed"])
        // Log the first failure of a run, then every hundredth: a partition
        // fails every exchange with that peer until it heals.
        if failures % 100 == 1 {
            logger.warning(
                "global register exchange failed; anti-entropy retries it",
                ["peer": peer, "kind": kind, "failedInRow": "\(failures)", "error": "\(error)"])
        }
    }
}

private struct ExchangeFailure: Error, CustomStringConvertible {
    let detail: String
    var description: String { detail }
}
