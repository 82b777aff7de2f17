import Foundation
import Testing

@testable import Homeport

/// Helpers shared by the billing tests.
enum BillingFixture {
    static let logger = Logger(label: "billing-test", sink: .discarding)

    /// Returns the record numbered `number`: request id `req-<number>`, tokens that
    /// differ from record to record, and one of three models.
    static func usage(_ tenant: TenantID, _ number: Int) -> UsageRecord {
        try! UsageRecord(tenant: tenant, requestID: "req-\(number)", model: "model-\(number % 3)", tokens: Int64(number * 7 % 1000 + 1))
    }

    /// Returns the tokens and record count of the distinct records `numbers`.
    static func expected(_ tenant: TenantID, _ numbers: some Sequence<Int>) -> (tokens: Int64, records: Int64) {
        let distinct = Set(numbers)
        return (distinct.reduce(0) { $0 + usage(tenant, $1).tokens }, Int64(distinct.count))
    }

    static func makeRecorder(
        region: String, store: any LinearizableStore, clock: any WallClock = SystemClock(), metrics: MetricsRegistry? = nil,
        configure: (inout BillingRecorder.Configuration) -> Void = { _ in }
    ) throws -> BillingRecorder {
        var configuration = BillingRecorder.Configuration()
        configuration.maximumRecordsPerBatch = 10
        configure(&configuration)
        return try BillingRecorder(
            region: region, configuration: configuration, store: store, clock: clock, logger: logger, metrics: metrics)
    }

    /// Records each numbered record and checks that it was new.
    static func record(_ numbers: some Sequence<Int>, of tenant: TenantID, at recorder: BillingRecorder) throws {
        for number in numbers {
            let outcome = try recorder.record(usage(tenant, number))
            guard case .accepted = outcome else {
                Issue.record("record \(number) was not accepted: \(outcome)")
                return
            }
        }
    }

    /// Reads the totals straight from the store, flushing nothing.
    static func storedTotals(_ tenant: TenantID, in store: any LinearizableStore) async throws -> (tokens: Int64, records: Int64) {
        let (totals, _) = try await BillingStoreWriter(store: store, region: "reader", clock: SystemClock()).readTotals(of: tenant)
        return (totals.tokens, totals.records)
    }

    static func temporaryDirectory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("homeport-billing-\(UUID().uuidString)").path
    }

    /// Waits until `condition` holds, checking every 5 ms, for at most 10 s.
    /// The bound only stops a hung test, so no test depends on its length.
    static func waitUntil(_ description: String, _ condition: () async -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if await condition() { return }
            try await Task.sleep(for: .milliseconds(5))
        }
        Issue.record("timed out waiting until \(description)")
    }
}

/// The exactly-once scenarios, written once and run on the embedded store
/// here and on a real etcd in `BillingEtcdTests`. Each ends by checking that
/// the store's totals equal the sum of the distinct records.
enum BillingScenario: String, CaseIterable, CustomStringConvertible, Sendable {
    case sameBatchSentTwice
    case lostAnswerRetried
    case crashAfterCommitInMemory
    case crashAfterCommitWithLog
    case twoRegionsWithSharedRequests
    case severalRegionsConcurrently
    case storeUnreachable

    var description: String { rawValue }

    func run(on store: any LinearizableStore) async throws {
        let tenant = TenantID("tenant-" + rawValue.lowercased())!
        switch self {
        case .sameBatchSentTwice: try await runSameBatchSentTwice(store, tenant)
        case .lostAnswerRetried: try await runLostAnswerRetried(store, tenant)
        case .crashAfterCommitInMemory: try await runCrashAfterCommitInMemory(store, tenant)
        case .crashAfterCommitWithLog: try await runCrashAfterCommitWithLog(store, tenant)
        case .twoRegionsWithSharedRequests: try await runTwoRegionsWithSharedRequests(store, tenant)
        case .severalRegionsConcurrently: try await runSeveralRegionsConcurrently(store, tenant)
        case .storeUnreachable: try await runStoreUnreachable(store, tenant)
        }
    }

    /// The network delivers a batch transaction twice, and either response
    /// reaches the region. Then the region's writer sends one batch twice itself.
    private func runSameBatchSentTwice(_ base: any LinearizableStore, _ tenant: TenantID) async throws {
        let store = InjectedFaultStore(base)
        let recorder = try BillingFixture.makeRecorder(region: "us-east", store: store)

        try BillingFixture.record(1...10, of: tenant, at: recorder)
        store.inject(.deliverTwice(responseOfSecond: true))
        let first = try await recorder.flush()
        #expect(first.batchesAlreadyApplied == 1)
        #expect(first.batchesApplied == 0)

        try BillingFixture.record(11...20, of: tenant, at: recorder)
        store.inject(.deliverTwice(responseOfSecond: false))
        let second = try await recorder.flush()
        #expect(second.batchesApplied == 1)
        #expect(store.deliveredWriteCount == 4)

        let batch = BillingBatch(tenant: tenant, records: (21...30).map { BillingFixture.usage(tenant, $0) })
        let writer = BillingStoreWriter(store: base, region: "us-east", clock: SystemClock())
        let lease = try await base.grantLease(ttl: .seconds(60))
        let applied = try await writer.attempt(batch, expected: try await Self.currentTotals(tenant, base), lease: lease.id)
        let again = try await writer.attempt(batch, expected: try await Self.currentTotals(tenant, base), lease: lease.id)
        guard case .applied = applied else {
            Issue.record("the first send of the batch was not applied: \(applied)")
            return
        }
        guard case .alreadyApplied = again else {
            Issue.record("the second send of the batch was not found already applied: \(again)")
            return
        }

        try await Self.expectTotals(tenant, base, numbers: 1...30)
        #expect(recorder.unflushedRecordCount == 0)
    }

    /// A batch commits and its response is lost. The region sends it again
    /// with new records waiting behind it.
    private func runLostAnswerRetried(_ base: any LinearizableStore, _ tenant: TenantID) async throws {
        let store = InjectedFaultStore(base)
        let recorder = try BillingFixture.makeRecorder(region: "us-east", store: store)

        try BillingFixture.record(1...10, of: tenant, at: recorder)
        store.inject(.loseAnswer)
        let lost = await #expect(throws: BillingError.self) { try await recorder.flush() }
        #expect(lost?.code == .storeUnavailable)
        #expect(recorder.unflushedRecordCount == 10)
        let committed = try await BillingFixture.storedTotals(tenant, in: base)
        #expect(committed.records == 10)

        // A request that never reached the store leaves nothing behind either.
        try BillingFixture.record(11...15, of: tenant, at: recorder)
        store.inject(.dropRequest)
        await #expect(throws: BillingError.self) { try await recorder.flush() }

        let retried = try await recorder.flush()
        #expect(retried.batchesAlreadyApplied == 1)
        #expect(retried.batchesApplied == 1)
        #expect(retried.recordsApplied == 5)
        #expect(recorder.unflushedRecordCount == 0)

        try await Self.expectTotals(tenant, base, numbers: 1...15)
    }

    /// The store commits a batch, the region crashes before it learns so and
    /// loses its memory, and the client sends some of the same requests
    /// again to the restarted region among new ones.
    private func runCrashAfterCommitInMemory(_ base: any LinearizableStore, _ tenant: TenantID) async throws {
        let store = InjectedFaultStore(base)
        let crashed = try BillingFixture.makeRecorder(region: "us-east", store: store)
        try BillingFixture.record(1...10, of: tenant, at: crashed)
        store.inject(.loseAnswer)
        _ = try? await crashed.flush()

        // The restarted region first flushes a new record, so that it has
        // the current totals and only the request keys can stop a recount.
        let restarted = try BillingFixture.makeRecorder(region: "us-east", store: store)
        try BillingFixture.record([100], of: tenant, at: restarted)
        try await restarted.flush()
        try BillingFixture.record(5...15, of: tenant, at: restarted)
        let report = try await restarted.flush()
        #expect(report.recordsAlreadyCounted == 6)
        #expect(report.recordsApplied == 5)
        #expect(report.retries == 1)

        try await Self.expectTotals(tenant, base, numbers: Array(1...15) + [100])
    }

    /// The same crash with a durable usage log: the restarted region reads
    /// its unflushed records back, batches them with new ones, and flushes.
    private func runCrashAfterCommitWithLog(_ base: any LinearizableStore, _ tenant: TenantID) async throws {
        let directory = BillingFixture.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = InjectedFaultStore(base)

        do {
            let crashed = try BillingFixture.makeRecorder(region: "us-east", store: store) { $0.dataDirectory = directory }
            try BillingFixture.record(1...8, of: tenant, at: crashed)
            store.inject(.loseAnswer)
            _ = try? await crashed.flush()
        }

        let restarted = try BillingFixture.makeRecorder(region: "us-east", store: store) { $0.dataDirectory = directory }
        #expect(restarted.unflushedRecordCount == 8)
        try BillingFixture.record(9...10, of: tenant, at: restarted)
        let report = try await restarted.flush()
        #expect(report.recordsAlreadyCounted == 8)
        #expect(report.recordsApplied == 2)
        #expect(report.batchesApplied == 1)

        try await Self.expectTotals(tenant, base, numbers: 1...10)

        // A second restart finds every record flushed, and still returns the
        // first record for a duplicate from memory.
        let again = try BillingFixture.makeRecorder(region: "us-east", store: store) { $0.dataDirectory = directory }
        #expect(again.unflushedRecordCount == 0)
        #expect(try again.record(BillingFixture.usage(tenant, 3)) == .duplicate(BillingFixture.usage(tenant, 3), flushed: true))
    }

    /// Two regions flush the same tenant at once, and 21 request ids reached
    /// both regions (a client retried at the other one).
    private func runTwoRegionsWithSharedRequests(_ store: any LinearizableStore, _ tenant: TenantID) async throws {
        let east = try BillingFixture.makeRecorder(region: "us-east", store: store)
        let west = try BillingFixture.makeRecorder(region: "us-west", store: store)
        try BillingFixture.record(1...60, of: tenant, at: east)
        try BillingFixture.record(40...100, of: tenant, at: west)

        async let eastReport = east.flush()
        async let westReport = west.flush()
        let reports = try await [eastReport, westReport]

        #expect(reports.reduce(0) { $0 + $1.recordsApplied } == 100)
        #expect(reports.reduce(0) { $0 + $1.recordsAlreadyCounted } == 21)
        #expect(reports.reduce(0) { $0 + $1.recordsConflicting } == 0)
        try await Self.expectTotals(tenant, store, numbers: 1...100)
    }

    /// Five regions record and flush the same tenant in three rounds at
    /// once. Eight request ids of each round reach every region.
    private func runSeveralRegionsConcurrently(_ store: any LinearizableStore, _ tenant: TenantID) async throws {
        let regionCount = 5
        let recorders = try (0..<regionCount).map { try BillingFixture.makeRecorder(region: "region-\($0)", store: store) }

        // Region r, round k and index i give record 10,000 r + 100 k + i. The
        // shared records are 900,000 + 100 k + i, the same in every region.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (regionIndex, recorder) in recorders.enumerated() {
                group.addTask {
                    for round in 0..<3 {
                        let own = (0..<30).map { 10_000 * regionIndex + 100 * round + $0 }
                        let shared = (0..<8).map { 900_000 + 100 * round + $0 }
                        try BillingFixture.record(own + shared, of: tenant, at: recorder)
                        try await recorder.flush()
                    }
                }
            }
            try await group.waitForAll()
        }

        var numbers: [Int] = []
        for regionIndex in 0..<regionCount {
            for round in 0..<3 {
                numbers += (0..<30).map { 10_000 * regionIndex + 100 * round + $0 }
                numbers += (0..<8).map { 900_000 + 100 * round + $0 }
            }
        }
        for recorder in recorders {
            #expect(recorder.unflushedRecordCount == 0)
        }
        try await Self.expectTotals(tenant, store, numbers: numbers)
    }

    /// The region loses its path to the store: records stay buffered and
    /// recording goes on, flushes and totals reads fail with
    /// `storeUnavailable`, and the records reach the store once it returns.
    private func runStoreUnreachable(_ base: any LinearizableStore, _ tenant: TenantID) async throws {
        let view = PartitionableStoreView(base)
        let recorder = try BillingFixture.makeRecorder(region: "us-east", store: view)
        try BillingFixture.record(1...10, of: tenant, at: recorder)

        view.setReachable(false)
        let flushFailure = await #expect(throws: BillingError.self) { try await recorder.flush() }
        #expect(flushFailure?.code == .storeUnavailable)
        try BillingFixture.record(11...15, of: tenant, at: recorder)
        #expect(recorder.unflushedRecordCount == 15)

        let readFailure = await #expect(throws: BillingError.self) { try await recorder.totals(of: tenant) }
        #expect(readFailure?.code == .storeUnavailable)
        if let readFailure {
            #expect(ProblemDetails.from(readFailure).status == 503)
        }

        view.setReachable(true)
        let totals = try await recorder.totals(of: tenant)
        let expected = BillingFixture.expected(tenant, 1...15)
        #expect(totals.tokens == expected.tokens)
        #expect(totals.records == expected.records)
        #expect(totals.unflushedRecords == 0)
        try await Self.expectTotals(tenant, base, numbers: 1...15)
    }

    private static func currentTotals(_ tenant: TenantID, _ store: any LinearizableStore) async throws -> StoredTotals {
        try StoredTotals.decode(try await store.get(BillingKeys.totals(tenant)))
    }

    /// Checks the store's totals against the distinct records `numbers`, and
    /// that every counted record has its request key.
    private static func expectTotals(
        _ tenant: TenantID, _ store: any LinearizableStore, numbers: some Sequence<Int>, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let expected = BillingFixture.expected(tenant, numbers)
        let stored = try await BillingFixture.storedTotals(tenant, in: store)
        #expect(stored.tokens == expected.tokens, sourceLocation: sourceLocation)
        #expect(stored.records == expected.records, sourceLocation: sourceLocation)

        let requestKeys = try await store.range(prefix: BillingKeys.tenantPrefix(tenant) + "requests/")
        #expect(Int64(requestKeys.count) == expected.records, sourceLocation: sourceLocation)
    }
}

@Suite struct BillingExactlyOnceTests {
    @Test("embedded store counts each record once", arguments: BillingScenario.allCases)
    func embedded(_ scenario: BillingScenario) async throws {
        try await scenario.run(on: EmbeddedLinearizableStore())
    }
}
