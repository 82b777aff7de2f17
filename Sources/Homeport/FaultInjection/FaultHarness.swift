import Foundation

/// The result of one scenario: its counts and the invariants it broke.
public struct FaultOutcome: Sendable {
    public var scenario: FaultScenario
    /// Broken invariants, each a sentence naming the session and the value at fault. Empty means the run passed.
    public var violations: [String] = []
    public var acknowledgedTurns = 0
    /// Acknowledged turns missing at the end. Must be 0 with a data directory.
    public var lostAcknowledgedTurns = 0
    /// Entries the crashed home had not had acknowledged by its neighbour when
    /// it crashed: the most a crash without a data directory may lose.
    public var recoveryPointEntries = 0
    public var requestsSucceeded = 0
    public var requestsFailed = 0
    public var takeovers = 0
    public var recordsReconciled = 0
    public var network = SimulatedNetwork.Counters()

    public var passed: Bool { violations.isEmpty }

    /// The command that runs this scenario again with its logs.
    public var replayCommand: String { "swift run homeport faults --seed \(scenario.seed) --verbose" }

    public var summary: String {
        "\(scenario.description): \(passed ? "passed" : "FAILED") (\(requestsSucceeded) requests served, \(requestsFailed) failed, \(acknowledgedTurns) turns acknowledged, \(lostAcknowledgedTurns) lost of at most \(scenario.durable ? 0 : recoveryPointEntries), \(takeovers) takeovers, \(recordsReconciled) records reconciled)"
    }
}

/// Runs fault scenarios against three regions built by `RegionAssembly`, the
/// code `homeport serve` runs: real nodes, stores, session logs, shippers,
/// lease keepers, takeover monitors and reconcile. Only the network between
/// regions (`SimulatedNetwork`), the clock (`ManualClock`) and process
/// lifetimes are simulated. The harness drives everything from one task,
/// one tick at a time, so a seed replays the same run.
///
/// Clients create sessions, append turns with idempotency keys, move tool
/// calls along the ledger, put values and read, entering at any region and
/// retrying what failed. After the fault and a settling period the harness
/// checks:
/// - every acknowledged turn, ledger status and value is at the session's
///   home (without a data directory, the turns lost are at most the entries
///   the neighbour had not acknowledged at the crash);
/// - no idempotency key appears twice in a buffer;
/// - no ledger entry ends below a status that was acknowledged;
/// - no two regions served a session in the same epoch, and no region
///   served an epoch older than one already served (the old home fenced);
/// - while the home and its neighbour are both down, nothing about their
///   sessions is served, and the response is 503;
/// - with a data directory, no session keeps `replicationGap` after reconcile.
public struct FaultHarness {
    public static let regions = ["us-east", "us-west", "eu-west"]

    public let scenario: FaultScenario
    private let logger: Logger

    public init(scenario: FaultScenario, logger: Logger = Logger(label: "faults", sink: .discarding)) {
        self.scenario = scenario
        self.logger = logger
    }

    public func run() async throws -> FaultOutcome {
        let world = try World(scenario: scenario, logger: logger)
        defer { world.removeDataDirectory() }
        return await world.run()
    }
}

/// A client's view of one session: its token and the writes acknowledged to it.
private struct ClientSession {
    var id: SessionID
    var token: String
    /// The token from the session's creation. Another client of the session
    /// may still hold it after a takeover, so some requests send it.
    var firstToken: String
    var home: String
    var nextTurn = 0
    /// An append that failed, resent with the same key until it is acknowledged.
    var pendingTurn: (key: String, content: String)?
    var acknowledgedTurns: [String: String] = [:]
    var nextCall = 0
    /// Each open call and the index of its next status in `statusPath`.
    var openCalls: [String: Int] = [:]
    var statusPath: [String: [LedgerStatus]] = [:]
    var acknowledgedLedger: [String: LedgerStatus] = [:]
    var acknowledgedValues: Set<String> = []
}

private final class World {
    let scenario: FaultScenario
    let logger: Logger
    let clock = ManualClock()
    let network: SimulatedNetwork
    let sharedStore: EmbeddedLinearizableStore
    let keyRing: TokenKeyRing
    let topology: RegionTopology
    let dataDirectory: String?
    var random: SplitMix64
    var assembly: RegionAssembly
    var views: [String: PartitionableStoreView] = [:]
    var nodes: [String: RegionNode] = [:]
    var sessions: [ClientSession] = []
    var outcome: FaultOutcome
    /// The region that served each session at each epoch.
    var servedEpochs: [SessionID: [UInt64: String]] = [:]
    var bothDown = false

    var home: String { FaultHarness.regions[0] }
    var neighbour: String { topology.neighbour(of: home)! }

    init(scenario: FaultScenario, logger: Logger) throws {
        self.scenario = scenario
        self.logger = logger
        self.outcome = FaultOutcome(scenario: scenario)
        self.random = SplitMix64(seed: scenario.seed ^ 0x5EED)
        self.network = SimulatedNetwork(seed: scenario.seed)
        self.sharedStore = EmbeddedLinearizableStore(clock: clock, logger: logger)
        self.keyRing = try TokenKeyRing(keys: ["k1": Array(repeating: UInt8(7), count: 32)], signingKeyID: "k1")
        self.topology = try RegionTopology(
            regions: FaultHarness.regions.map { RegionEndpoint(name: $0) },
            // The simulated network delivers at once; the matrix only has to be complete.
            latency: LatencyMatrix(
                oneWay: [
                    RegionPair("us-east", "us-west"): .zero, RegionPair("us-east", "eu-west"): .zero,
                    RegionPair("us-west", "eu-west"): .zero,
                ], jitterFraction: 0))

        if scenario.durable {
            let path = NSTemporaryDirectory() + "homeport-faults-\(scenario.seed)-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            dataDirectory = path
        } else {
            dataDirectory = nil
        }

        var assembly = RegionAssembly(
            topology: topology, limits: SessionStoreLimits(), keyRing: keyRing, clock: clock, logger: logger, metrics: MetricsRegistry(),
            peers: network)
        var replication = ReplicationOutbox.Configuration()
        replication.maximumBatchEntries = 16
        replication.maximumBatchDelayMilliseconds = 200
        assembly.replication = replication
        var lease = RegionLease.Configuration()
        lease.ttl = .seconds(2)
        lease.renewInterval = .milliseconds(500)
        lease.safetyMargin = .milliseconds(500)
        assembly.lease = lease
        assembly.dataDirectory = dataDirectory
        assembly.fsync = .periodic(.seconds(60))
        // Small reconcile requests, so that a crash can fall between two of them.
        assembly.reconcileSessionsPerRequest = 2
        self.assembly = assembly
        network.setFaults(scenario.backgroundFaults)
    }

    func removeDataDirectory() {
        if let dataDirectory { try? FileManager.default.removeItem(atPath: dataDirectory) }
    }

    // MARK: Process lifetimes

    func start(_ region: String) async {
        let view = views[region] ?? PartitionableStoreView(sharedStore)
        views[region] = view
        var regionAssembly = assembly
        regionAssembly.linearizableStore = view
        do {
            let node = try regionAssembly.makeNode(topology.endpoint(region)!)
            nodes[region] = node
            network.attach(node)
            await node.leaseKeeper?.step()
            if let report = await node.reconcileIfNeeded() {
                outcome.recordsReconciled += report.recordsMerged
            }
            collectTriggeredCrashes()
        } catch {
            outcome.violations.append("\(region) could not restart: \(error)")
        }
    }

    func crash(_ region: String) {
        if let shipper = nodes[region]?.replication, !scenario.durable {
            outcome.recoveryPointEntries += shipper.statistics().pendingEntries
        }
        nodes[region] = nil
        network.detach(region)
    }

    func collectTriggeredCrashes() {
        for region in network.takeTriggeredCrashes() {
            nodes[region] = nil
        }
    }

    // MARK: The run

    func run() async -> FaultOutcome {
        for region in FaultHarness.regions {
            await start(region)
        }
        for index in 0..<scenario.sessionCount {
            await createSession(at: FaultHarness.regions[index % FaultHarness.regions.count])
        }

        let lastTick = scenario.recoverTick + scenario.settleTicks
        var neighbourRestartTick: Int?
        for tick in 0..<lastTick {
            if tick == scenario.faultTick { await beginFault() }
            if tick == scenario.recoverTick { await endFault() }
            if scenario.kind == .crashDuringReconcile, tick == scenario.recoverTick + 10, nodes[home] == nil {
                await start(home)
            }
            if scenario.kind == .doubleFailure, tick == scenario.recoverTick + 10 {
                await start(home)
            }
            // The new home restarts right after the reconcile, before clients
            // touch the sessions: what it merged must be in its own log, since
            // the old home has emptied its own.
            if scenario.durable, scenario.kind == .homeCrash || scenario.kind == .crashDuringReconcile {
                if neighbourRestartTick == nil, nodes[home]?.completedReconciles.isEmpty == false {
                    crash(neighbour)
                    neighbourRestartTick = tick + 4
                }
                if tick == neighbourRestartTick { await start(neighbour) }
            }
            await advance()
            // Every sixth session (half of the home's) is idle from the fault
            // until well after the recovery, so that some of the home's
            // sessions are never adopted on a request.
            let idleSessions = tick >= scenario.faultTick && tick < scenario.recoverTick + 30
            for _ in 0..<scenario.requestsPerTick {
                await sendClientRequest(skippingIdle: idleSessions)
            }
        }

        // Settle without faults, then let replication and reconcile finish.
        network.setFaults(SimulatedNetwork.Faults())
        for _ in 0..<30 {
            await advance()
        }
        await verify()
        outcome.network = network.counters
        return outcome
    }

    func beginFault() async {
        switch scenario.kind {
        case .homeCrash, .crashDuringReconcile:
            crash(home)
        case .storePartition:
            views[home]?.setReachable(false)
        case .neighbourPartition:
            network.cut(home, neighbour)
        case .duplicatedBatches:
            network.setFaults(SimulatedNetwork.Faults(requestLoss: 0.1, responseLoss: 0.1, duplication: 0.3))
        case .doubleFailure:
            crash(home)
            crash(neighbour)
            bothDown = true
        }
    }

    func endFault() async {
        switch scenario.kind {
        case .homeCrash:
            await start(home)
        case .crashDuringReconcile:
            // The home dies right after one of its tails requests is merged.
            network.crash(home, afterDeliveries: 1 + Int(random.next() % 2), to: ReconcileForward.tailsPath)
            await start(home)
        case .storePartition:
            views[home]?.setReachable(true)
        case .neighbourPartition:
            network.heal(home, neighbour)
        case .duplicatedBatches:
            network.setFaults(scenario.backgroundFaults)
        case .doubleFailure:
            bothDown = false
            await start(neighbour)
        }
    }

    /// Runs one tick. Every live node renews, reconciles, watches and ships,
    /// late duplicates arrive, and then the clock moves on.
    func advance() async {
        for region in FaultHarness.regions {
            guard let node = nodes[region] else { continue }
            await node.leaseKeeper?.step()
            if let report = await node.reconcileIfNeeded() {
                outcome.recordsReconciled += report.recordsMerged
            }
            let wasTakenOver = node.takeovers?.hasTakenOver(home) ?? false
            await node.takeovers?.step()
            if !wasTakenOver, node.takeovers?.hasTakenOver(home) == true { outcome.takeovers += 1 }
            await node.replication?.shipDueBatches()
            collectTriggeredCrashes()
        }
        if random.next() % 3 == 0 { await network.deliverHeldDuplicates() }
        clock.advance(by: FaultScenario.tick)
        // Nothing here suspends by itself; let other tasks of the process run.
        await Task.yield()
    }

    // MARK: Clients

    func send(_ method: String, _ path: String, at region: String, token: String?, body: JSONValue?, headers: [String: String] = [:])
        async -> HTTPResponse?
    {
        guard let node = nodes[region] else { return nil }
        var request = HTTPRequest(method: method, path: path, headers: headers, body: body?.serializedBytes() ?? [])
        if let token { request.headers["homeport-route"] = token }
        if body != nil { request.headers["content-type"] = "application/json" }
        let response = await node.handle(request)
        collectTriggeredCrashes()
        return response
    }

    func createSession(at region: String) async {
        for _ in 0..<20 {
            if let response = await send("POST", "/v1/tenants/acme/sessions", at: region, token: nil, body: .object([:])),
                response.status == 201, let body = try? JSONValue.parse(response.body), let text = body["session"]?.stringValue,
                let id = SessionID(text), let token = response.header(RegionNode.routeHeader)
            {
                sessions.append(ClientSession(id: id, token: token, firstToken: token, home: region))
                return
            }
            await advance()
        }
        outcome.violations.append("a session could not be created at \(region) before any fault")
    }

    /// Picks where a request enters: usually the home its token names, else
    /// another live region, as a client that fails over its entry point.
    func entryRegion(for session: ClientSession) -> String? {
        let live = FaultHarness.regions.filter { nodes[$0] != nil }
        guard !live.isEmpty else { return nil }
        if random.next() % 4 != 0, live.contains(session.home) { return session.home }
        return live[Int(random.next() % UInt64(live.count))]
    }

    func sendClientRequest(skippingIdle: Bool) async {
        guard !sessions.isEmpty else { return }
        let index = Int(random.next() % UInt64(sessions.count))
        if skippingIdle, index % 6 == 0 { return }
        var session = sessions[index]
        defer { sessions[index] = session }
        guard let entry = entryRegion(for: session) else { return }
        let path = "/v1/tenants/acme/sessions/\(session.id.rawValue)"
        let roll = random.next() % 10
        let token = random.next() % 5 == 0 ? session.firstToken : session.token

        switch roll {
        case 0..<5:
            if session.pendingTurn == nil {
                session.nextTurn += 1
                session.pendingTurn = ("t\(session.nextTurn)", "\(session.id.rawValue) turn \(session.nextTurn)")
            }
            let (key, content) = session.pendingTurn!
            let body: JSONValue = .object([
                "role": .string("user"), "content": .string(content), "tokens": .integer(3), "idempotencyKey": .string(key),
            ])
            let response = await send("POST", path + "/turns", at: entry, token: token, body: body)
            if observe(response, &session, entry: entry) {
                session.acknowledgedTurns[key] = content
                session.pendingTurn = nil
            }
        case 5..<7:
            let call: String
            if let open = session.openCalls.keys.sorted().first, random.next() % 3 != 0 {
                call = open
            } else {
                session.nextCall += 1
                call = "c\(session.nextCall)"
                let terminal: [LedgerStatus] = [.succeeded, .failed, .cancelled]
                session.statusPath[call] = [.requested, .running, terminal[Int(random.next() % 3)]]
                session.openCalls[call] = 0
            }
            let step = session.openCalls[call] ?? 2
            let status = session.statusPath[call]![step]
            let body: JSONValue = .object(["status": .string(status.rawValue), "name": .string("search")])
            let response = await send("PUT", path + "/ledger/\(call)", at: entry, token: token, body: body)
            if observe(response, &session, entry: entry) {
                if (session.acknowledgedLedger[call]?.rank ?? -1) < status.rank { session.acknowledgedLedger[call] = status }
                session.openCalls[call] = step + 1 < 3 ? step + 1 : nil
            }
        case 7:
            let name = "v\(random.next() % 3)"
            let body: JSONValue = .object(["value": .integer(Int64(random.next() % 100))])
            let response = await send("PUT", path + "/values/\(name)", at: entry, token: token, body: body)
            if observe(response, &session, entry: entry) { session.acknowledgedValues.insert(name) }
        case 8:
            let response = await send("GET", path, at: entry, token: token, body: nil)
            _ = observe(response, &session, entry: entry)
        default:
            let headers = random.next() % 2 == 0 ? ["homeport-stale-read": "allow"] : [:]
            let response = await send("GET", path + "/turns", at: entry, token: token, body: nil, headers: headers)
            _ = observe(response, &session, entry: entry)
        }
    }

    /// Records a response and returns true when it acknowledged the request.
    func observe(_ response: HTTPResponse?, _ session: inout ClientSession, entry: String) -> Bool {
        guard let response else {
            outcome.requestsFailed += 1
            return false
        }
        if let token = response.header(RegionNode.routeHeader),
            let verified = try? keyRing.verify(token, nowSeconds: clock.nowMilliseconds() / 1000)
        {
            session.token = token
            session.home = verified.home
        }
        let servedHome = bothDown && session.home == home

        guard (200..<300).contains(response.status) else {
            outcome.requestsFailed += 1
            if servedHome, response.status != 503 {
                outcome.violations.append(
                    "session \(session.id) got \(response.status) at \(entry) while \(home) and \(neighbour) were down; expected a clear 503"
                )
            }
            if (400..<500).contains(response.status) {
                let text = String(decoding: response.body.prefix(300), as: UTF8.self)
                outcome.violations.append("session \(session.id) got \(response.status) at \(entry): \(text)")
            }
            return false
        }
        outcome.requestsSucceeded += 1
        if servedHome {
            outcome.violations.append("session \(session.id) was served at \(entry) while \(home) and \(neighbour) were both down")
        }

        // Record which region served which epoch, from responses of a home.
        guard response.header(RegionNode.servedFromHeader) == nil, let servedBy = response.header(RegionNode.servedByHeader),
            body(of: response)?["replayed"]?.boolValue != true, let body = try? JSONValue.parse(response.body)
        else { return true }
        // A ledger entry keeps an older stamp when the write changed nothing.
        let appliedEntryEpoch = body["applied"]?.boolValue == true ? body["entry"]?["epoch"]?.integerValue : nil
        if let epoch = body["epoch"]?.integerValue ?? body["turn"]?["epoch"]?.integerValue ?? appliedEntryEpoch {
            let served = servedEpochs[session.id, default: [:]]
            if let previous = served[UInt64(epoch)], previous != servedBy {
                outcome.violations.append("session \(session.id) was served at epoch \(epoch) by both \(previous) and \(servedBy)")
            }
            // Once a later epoch has been served, the old home must have fenced itself.
            if let latest = served.keys.max(), latest > UInt64(epoch) {
                outcome.violations.append(
                    "session \(session.id) was served at epoch \(epoch) by \(servedBy) after \(served[latest]!) had served epoch \(latest)")
            }
            servedEpochs[session.id, default: [:]][UInt64(epoch)] = servedBy
        }
        return true
    }

    func body(of response: HTTPResponse) -> JSONValue? {
        try? JSONValue.parse(response.body)
    }

    // MARK: Invariants

    func verify() async {
        for index in sessions.indices {
            var session = sessions[index]
            let path = "/v1/tenants/acme/sessions/\(session.id.rawValue)"
            outcome.acknowledgedTurns += session.acknowledgedTurns.count

            var turnsResponse: HTTPResponse?
            for _ in 0..<40 {
                if let response = await send("GET", path + "/turns", at: session.home, token: session.token, body: nil),
                    response.status == 200
                {
                    turnsResponse = response
                    if let token = response.header(RegionNode.routeHeader),
                        let verified = try? keyRing.verify(token, nowSeconds: clock.nowMilliseconds() / 1000)
                    {
                        session.token = token
                        session.home = verified.home
                    }
                    break
                }
                await advance()
            }
            guard let turnsResponse, let body = try? JSONValue.parse(turnsResponse.body), let turns = body["turns"]?.arrayValue else {
                outcome.lostAcknowledgedTurns += session.acknowledgedTurns.count
                if scenario.durable || !session.acknowledgedTurns.isEmpty && scenario.kind != .homeCrash {
                    outcome.violations.append("session \(session.id) cannot be read at the end")
                }
                continue
            }

            var keys: [String: Int] = [:]
            for turn in turns {
                if let key = turn["idempotencyKey"]?.stringValue { keys[key, default: 0] += 1 }
            }
            for (key, count) in keys where count > 1 {
                outcome.violations.append("session \(session.id) holds the turn with idempotency key \(key) \(count) times")
            }
            let missing = session.acknowledgedTurns.keys.filter { keys[$0] == nil }.sorted()
            outcome.lostAcknowledgedTurns += missing.count
            if !missing.isEmpty, scenario.durable || scenario.kind != .homeCrash {
                outcome.violations.append("session \(session.id) lost acknowledged turns \(missing)")
            }
            if scenario.durable, body["replicationGap"]?.boolValue == true || turnsResponse.header("Homeport-Replication-Gap") != nil {
                outcome.violations.append("session \(session.id) still reports a replication gap after reconcile")
            }

            if let ledger = await send("GET", path + "/ledger", at: session.home, token: session.token, body: nil),
                ledger.status == 200, let entries = (try? JSONValue.parse(ledger.body))?["entries"]?.arrayValue
            {
                let byCall = Dictionary(entries.compactMap { entry in entry["callId"]?.stringValue.map { ($0, entry) } }) { first, _ in
                    first
                }
                for (call, status) in session.acknowledgedLedger {
                    let held = byCall[call]?["status"]?.stringValue.flatMap(LedgerStatus.init(rawValue:))
                    let lost = scenario.kind == .homeCrash && !scenario.durable
                    guard let held else {
                        if !lost { outcome.violations.append("session \(session.id) lost acknowledged ledger entry \(call)") }
                        continue
                    }
                    if held.rank < status.rank, !lost {
                        outcome.violations.append(
                            "session \(session.id) ledger entry \(call) is \(held.rawValue), behind the acknowledged \(status.rawValue)")
                    }
                }
            }
            if let values = await send("GET", path + "/values", at: session.home, token: session.token, body: nil),
                values.status == 200, let entries = (try? JSONValue.parse(values.body))?["values"]?.arrayValue
            {
                let names = Set(entries.compactMap { $0["name"]?.stringValue })
                let lost = scenario.kind == .homeCrash && !scenario.durable
                for name in session.acknowledgedValues.sorted() where !names.contains(name) && !lost {
                    outcome.violations.append("session \(session.id) lost acknowledged value \(name)")
                }
            }
            sessions[index] = session
        }

        if !scenario.durable, scenario.kind == .homeCrash, outcome.lostAcknowledgedTurns > outcome.recoveryPointEntries {
            outcome.violations.append(
                "the crash lost \(outcome.lostAcknowledgedTurns) acknowledged turns, more than the \(outcome.recoveryPointEntries) entries unacknowledged at the crash"
            )
        }
    }
}
