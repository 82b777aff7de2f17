import Synchronization
import Testing

@testable import Homeport

/// The linearizability checker on hand-made histories, then on histories
/// recorded from concurrent clients of three regions.
@Suite struct QuotaLinearizabilityTests {
    /// Builds a history from `(client, input, output, call, response)` rows.
    static func history(_ rows: [(String, QuotaModelInput, QuotaModelOutput, UInt64, UInt64)]) -> [QuotaOperation] {
        rows.enumerated().map { index, row in
            QuotaOperation(id: index, client: row.0, input: row.1, output: row.2, call: row.3, response: row.4)
        }
    }

    static let checker = LinearizabilityChecker<QuotaModel>()

    // MARK: Hand-made histories

    @Test func sequentialHistoryWithinLimitIsLinearizable() {
        let history = Self.history([
            ("a", .reserve(id: "r1", amount: 6), .granted, 1, 2),
            ("a", .commit(id: "r1", used: 4), .settled(returned: 2), 3, 4),
            ("a", .reserve(id: "r2", amount: 6), .granted, 5, 6),
            ("a", .status, .status(committedBound: 10, limit: 10), 7, 8),
            ("a", .release(id: "r2"), .settled(returned: 6), 9, 10),
            ("a", .reserve(id: "r2", amount: 6), .granted, 11, 12),
        ])

        #expect(Self.checker.check(history, initial: QuotaModel(limit: 10)) == .linearizable(order: [0, 1, 2, 3, 4, 5]))
    }

    /// Reserve b fits only after commit a has returned tokens; the calls
    /// overlap, so the checker must order the commit first.
    @Test func overlappingCommitMustComeFirst() {
        let history = Self.history([
            ("a", .reserve(id: "a", amount: 10), .granted, 1, 2),
            ("b", .reserve(id: "b", amount: 6), .granted, 3, 6),
            ("a", .commit(id: "a", used: 4), .settled(returned: 6), 4, 5),
        ])

        #expect(Self.checker.check(history, initial: QuotaModel(limit: 10)) == .linearizable(order: [0, 2, 1]))
    }

    @Test func grantsOverLimitAreNotLinearizable() {
        // The same as above, but reserve b returned before the commit began.
        let history = Self.history([
            ("a", .reserve(id: "a", amount: 10), .granted, 1, 2),
            ("b", .reserve(id: "b", amount: 6), .granted, 3, 4),
            ("a", .commit(id: "a", used: 4), .settled(returned: 6), 5, 6),
        ])

        let verdict = Self.checker.check(history, initial: QuotaModel(limit: 10))

        #expect(verdict == .notLinearizable(longestPrefix: [0]))
    }

    @Test func concurrentGrantsOverLimitAreNotLinearizable() {
        let history = Self.history([
            ("a", .reserve(id: "a", amount: 7), .granted, 1, 4),
            ("b", .reserve(id: "b", amount: 7), .granted, 2, 5),
            ("c", .reserve(id: "c", amount: 1), .denied(.limitReached), 3, 6),
        ])

        #expect(!Self.checker.check(history, initial: QuotaModel(limit: 10)).isLinearizable)
    }

    @Test func changedOutcomeOnRetryIsNotLinearizable() {
        let history = Self.history([
            ("a", .reserve(id: "r1", amount: 5), .denied(.storeUnavailable), 1, 2),
            ("a", .reserve(id: "r1", amount: 5), .granted, 3, 4),
        ])

        #expect(!Self.checker.check(history, initial: QuotaModel(limit: 10)).isLinearizable)
    }

    @Test func statusBelowWhatIsHeldIsNotLinearizable() {
        let history = Self.history([
            ("a", .reserve(id: "r1", amount: 6), .granted, 1, 2),
            ("b", .status, .status(committedBound: 5, limit: 10), 3, 4),
        ])

        #expect(!Self.checker.check(history, initial: QuotaModel(limit: 10)).isLinearizable)
    }

    @Test func statusOverlappingTheGrantMayComeFirst() {
        let history = Self.history([
            ("a", .reserve(id: "r1", amount: 6), .granted, 1, 4),
            ("b", .status, .status(committedBound: 0, limit: 10), 2, 3),
        ])

        #expect(Self.checker.check(history, initial: QuotaModel(limit: 10)) == .linearizable(order: [1, 0]))
    }

    @Test func wrongReturnedAmountIsNotLinearizable() {
        let history = Self.history([
            ("a", .reserve(id: "r1", amount: 6), .granted, 1, 2),
            ("a", .commit(id: "r1", used: 4), .settled(returned: 1), 3, 4),
        ])

        #expect(!Self.checker.check(history, initial: QuotaModel(limit: 10)).isLinearizable)
    }

    @Test func releaseAfterCommitMustBeRejected() {
        let accepted = Self.history([
            ("a", .reserve(id: "r1", amount: 6), .granted, 1, 2),
            ("a", .commit(id: "r1", used: 6), .settled(returned: 0), 3, 4),
            ("a", .release(id: "r1"), .rejected(.reservationNotHeld), 5, 6),
        ])
        let wrong = Self.history([
            ("a", .reserve(id: "r1", amount: 6), .granted, 1, 2),
            ("a", .commit(id: "r1", used: 6), .settled(returned: 0), 3, 4),
            ("a", .release(id: "r1"), .settled(returned: 6), 5, 6),
        ])

        #expect(Self.checker.check(accepted, initial: QuotaModel(limit: 10)).isLinearizable)
        #expect(!Self.checker.check(wrong, initial: QuotaModel(limit: 10)).isLinearizable)
    }

    @Test func searchStopsAtStepBound() {
        // Forty overlapping reservations, each fitting alone: many orders to try.
        var rows: [(String, QuotaModelInput, QuotaModelOutput, UInt64, UInt64)] = []
        for index in 0..<40 {
            rows.append(("c\(index)", .reserve(id: "r\(index)", amount: 1), .granted, UInt64(index + 1), UInt64(100 + index)))
        }
        rows.append(("z", .reserve(id: "z", amount: 1), .granted, 200, 201))
        var checker = LinearizabilityChecker<QuotaModel>()
        checker.maximumSteps = 50

        let verdict = checker.check(Self.history(rows), initial: QuotaModel(limit: 40))

        #expect(verdict == .unknown(steps: 51))
    }

    // MARK: Recorded histories

    /// Four tenants, six clients each over three regions, with ap-south cut
    /// off from the store from 4 s to 11 s (its lease expires after 5 s)
    /// and then reconnected. Time moves only when every client waits, so the
    /// cut always falls in the middle of the clients' work. Each tenant's
    /// history is checked on its own, because tenants share nothing.
    @Test func recordedHistoriesAreLinearizable() async throws {
        var configuration = QuotaService.Configuration.testing
        configuration.reservationTTL = .seconds(600)
        configuration.sizing.minimumChunkTokens = 20
        let cluster = try QuotaTestCluster(configuration: configuration)
        await cluster.step()

        let tenants = (1...4).map { TenantID.test("tenant-\($0)") }
        let limit: Int64 = 1000
        for tenant in tenants {
            _ = try await cluster["us-east"].setPolicy(QuotaPolicy(limit: limit, periodSeconds: 3600), for: tenant)
        }
        let histories = Dictionary(uniqueKeysWithValues: tenants.map { ($0, QuotaHistory()) })
        let lockstep = Lockstep(clients: tenants.count * 6, clock: cluster.clock)
        let start = cluster.clock.nowMilliseconds()

        let driver = Task {
            await lockstep.drive { now in
                let elapsed = now - start
                let cut = (4000..<11_000).contains(elapsed)
                cluster.views["ap-south"]!.setReachable(!cut)
                await cluster.step(cut ? ["us-east", "eu-west"] : QuotaTestCluster.regions)
            }
        }

        try await withThrowingTaskGroup(of: Void.self) { group in
            for (tenantIndex, tenant) in tenants.enumerated() {
                for client in 0..<6 {
                    let region = QuotaTestCluster.regions[client % 3]
                    let number = tenantIndex * 6 + client
                    group.addTask {
                        defer { lockstep.finish(number) }
                        try await Self.runClient(
                            "\(region)/\(client)", service: cluster[region], tenant: tenant, history: histories[tenant]!,
                            seed: UInt64(number + 1)
                        ) { duration in await lockstep.sleep(number, for: duration) }
                    }
                }
            }
            try await group.waitForAll()
        }
        await driver.value

        var storeUnavailable = 0
        for tenant in tenants {
            let history = histories[tenant]!.history
            let verdict = Self.checker.check(history, initial: QuotaModel(limit: limit))
            #expect(history.count >= 200)
            #expect(history.contains { $0.output == .granted })
            #expect(history.contains { $0.output == .denied(.limitReached) })
            #expect(verdict.isLinearizable, "tenant \(tenant): \(verdict) over \(history.count) operations")
            storeUnavailable += history.filter { $0.output == .denied(.storeUnavailable) }.count
        }
        // The cut region denied while fenced, and its chunks were reclaimed and later credited.
        #expect(storeUnavailable > 0)
        var reclaimed = 0
        for region in ["us-east", "eu-west"] {
            for tenant in tenants {
                reclaimed += try await cluster[region].status(tenant: tenant).regionView?.counters.reclaimedChunks ?? 0
            }
        }
        #expect(reclaimed > 0)
    }

    /// Runs one client: reserves, commits, releases or holds, sometimes repeats a
    /// call or reuses a request id with another amount, reads the status,
    /// and waits 200 to 800 ms of simulated time between iterations. Every
    /// call is recorded with what it returned.
    static func runClient(
        _ name: String, service: QuotaService, tenant: TenantID, history: QuotaHistory, seed: UInt64,
        sleep: (Duration) async -> Void
    ) async throws {
        var random = SplitMix64(seed: seed)
        for iteration in 0..<24 {
            let id = "\(name.replacingOccurrences(of: "/", with: "-"))-\(iteration)"
            let amount = Int64.random(in: 1...40, using: &random)
            let reserve: () async -> QuotaModelOutput = {
                await Self.output { () async throws(QuotaError) in
                    try await service.reserve(tenant: tenant, requestID: .test(id), amount: amount)
                }
            }
            let reserved = await history.record(client: name, .reserve(id: id, amount: amount), reserve)

            switch Int.random(in: 0..<10, using: &random) {
            case 0, 1:
                await history.record(client: name, .reserve(id: id, amount: amount), reserve)
            case 2:
                await history.record(client: name, .reserve(id: id, amount: amount + 1)) {
                    await Self.output { () async throws(QuotaError) in
                        try await service.reserve(tenant: tenant, requestID: .test(id), amount: amount + 1)
                    }
                }
            default:
                break
            }

            if reserved == .granted {
                let settle: (QuotaModelInput, () -> QuotaModelOutput)?
                switch Int.random(in: 0..<4, using: &random) {
                case 0, 1:
                    let used = Int64.random(in: 0...amount, using: &random)
                    settle = (
                        .commit(id: id, used: used),
                        { Self.settled { () throws(QuotaError) in try service.commit(tenant: tenant, requestID: .test(id), used: used) } }
                    )
                case 2:
                    settle = (
                        .release(id: id),
                        { Self.settled { () throws(QuotaError) in try service.release(tenant: tenant, requestID: .test(id)) } }
                    )
                default:
                    settle = nil
                }
                if let (input, call) = settle {
                    await history.record(client: name, input) { call() }
                    if Int.random(in: 0..<4, using: &random) == 0 {
                        await history.record(client: name, input) { call() }
                    }
                }
            }

            if Int.random(in: 0..<4, using: &random) == 0 {
                // A status from a region's stale copy is not linearizable by
                // design, so only fresh reads are recorded.
                await history.recordIfPresent(client: name, .status) {
                    guard let status = try? await service.status(tenant: tenant), status.storeReachable else { return nil }
                    return .status(committedBound: status.record.consumed + status.record.outstanding, limit: status.record.policy.limit)
                }
            }
            await sleep(.milliseconds(Int64.random(in: 200...800, using: &random)))
        }
    }

    static func output(_ call: () async throws(QuotaError) -> ReserveResult) async -> QuotaModelOutput {
        do {
            switch try await call().outcome {
            case .granted: return .granted
            case .denied(let reason, _): return .denied(reason)
            }
        } catch {
            return .rejected(error.code)
        }
    }

    static func settled(_ call: () throws(QuotaError) -> SettleResult) -> QuotaModelOutput {
        do {
            let result = try call()
            return result.reservation.state == .expired ? .expired : .settled(returned: result.returned)
        } catch {
            return .rejected(error.code)
        }
    }
}

/// Moves a manual clock only when every client is waiting, in 100 ms ticks
/// up to the earliest wake-up, so simulated time follows the clients'
/// progress however the machine schedules them.
final class Lockstep: Sendable {
    private struct State {
        /// Waiting clients: their wake-up time and continuation.
        var waiting: [Int: (deadline: Int64, continuation: CheckedContinuation<Void, Never>)] = [:]
        var finished: Set<Int> = []
    }

    private let clients: Int
    private let clock: ManualClock
    /// The waiting and finished clients.
    private let state = Mutex(State())

    init(clients: Int, clock: ManualClock) {
        self.clients = clients
        self.clock = clock
    }

    /// Waits until simulated time has moved `duration` past now.
    func sleep(_ client: Int, for duration: Duration) async {
        let deadline = clock.nowMilliseconds() + duration.wholeMilliseconds
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            state.withLock { $0.waiting[client] = (deadline, continuation) }
        }
    }

    func finish(_ client: Int) {
        state.withLock { _ = $0.finished.insert(client) }
    }

    /// Runs until every client has finished: waits until each is waiting or
    /// finished, then ticks to the earliest deadline, calling `tick` with
    /// the time after each 100 ms, and wakes the clients that are due.
    func drive(_ tick: (Int64) async -> Void) async {
        while true {
            let earliest = state.withLock { state -> Int64?? in
                guard state.waiting.count + state.finished.count == clients else { return .none }
                return .some(state.waiting.values.map(\.deadline).min())
            }
            guard let next = earliest else {
                await Task.yield()
                continue
            }
            guard let deadline = next else { return }

            while clock.nowMilliseconds() < deadline {
                clock.advance(by: .milliseconds(100))
                await tick(clock.nowMilliseconds())
            }
            let now = clock.nowMilliseconds()
            let due = state.withLock { state in
                let due = state.waiting.filter { $0.value.deadline <= now }
                for client in due.keys { state.waiting[client] = nil }
                return due.values.map(\.continuation)
            }
            for continuation in due { continuation.resume() }
        }
    }
}
