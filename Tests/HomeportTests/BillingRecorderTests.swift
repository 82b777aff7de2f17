import Foundation
import Testing

@testable import Homeport

/// `BillingRecorder` on the embedded store: local deduplication, conflicts,
/// the deduplication window, retention leases, the periodic flush and the
/// configuration checks.
@Suite struct BillingRecorderTests {
    let tenant = TenantID("acme")!

    @Test func recordAnswersDuplicatesLocally() throws {
        let recorder = try BillingFixture.makeRecorder(region: "us-east", store: EmbeddedLinearizableStore())
        let record = BillingFixture.usage(tenant, 1)

        #expect(try recorder.record(record) == .accepted(record))
        #expect(try recorder.record(record) == .duplicate(record, flushed: false))
        #expect(recorder.unflushedRecordCount == 1)

        let conflicting = try UsageRecord(tenant: tenant, requestID: record.requestID, model: record.model, tokens: record.tokens + 1)
        let error = #expect(throws: BillingError.self) { try recorder.record(conflicting) }
        #expect(error?.code == .requestConflict)
        #expect(error?.detail.contains(record.requestID) == true)
    }

    @Test func flushOfOneTenantLeavesOthers() async throws {
        let store = EmbeddedLinearizableStore()
        let recorder = try BillingFixture.makeRecorder(region: "us-east", store: store)
        let other = TenantID("globex")!
        try BillingFixture.record(1...3, of: tenant, at: recorder)
        try BillingFixture.record(1...4, of: other, at: recorder)

        let report = try await recorder.flush(tenant: tenant)
        #expect(report.recordsApplied == 3)
        #expect(recorder.unflushedRecordCount(of: tenant) == 0)
        #expect(recorder.unflushedRecordCount(of: other) == 4)

        let all = try await recorder.flush()
        #expect(all.recordsApplied == 4)
        #expect(try await BillingFixture.storedTotals(other, in: store).records == 4)
    }

    @Test func emptyFlushSendsNothing() async throws {
        let store = InjectedFaultStore(EmbeddedLinearizableStore())
        let recorder = try BillingFixture.makeRecorder(region: "us-east", store: store)

        let report = try await recorder.flush()
        #expect(report == BillingFlushReport())
        #expect(store.deliveredWriteCount == 0)
    }

    /// Two regions got one request id with different numbers: the first
    /// committed copy is kept, and the flush reports the conflict.
    @Test func conflictAcrossRegionsKeepsFirstCount() async throws {
        let store = EmbeddedLinearizableStore()
        let east = try BillingFixture.makeRecorder(region: "us-east", store: store)
        let west = try BillingFixture.makeRecorder(region: "us-west", store: store)
        let first = BillingFixture.usage(tenant, 1)
        _ = try east.record(first)
        _ = try west.record(try UsageRecord(tenant: tenant, requestID: first.requestID, model: first.model, tokens: first.tokens + 500))
        try BillingFixture.record(2...3, of: tenant, at: west)

        try await east.flush()
        let report = try await west.flush()

        #expect(report.recordsConflicting == 1)
        #expect(report.recordsAlreadyCounted == 1)
        #expect(report.recordsApplied == 2)
        let stored = try await BillingFixture.storedTotals(tenant, in: store)
        #expect(stored.tokens == BillingFixture.expected(tenant, 1...3).tokens)
    }

    /// A region that has forgotten a flushed record accepts it again, and
    /// the store's request key keeps it from counting twice.
    @Test func forgottenDuplicateIsDroppedByStore() async throws {
        let store = EmbeddedLinearizableStore()
        let recorder = try BillingFixture.makeRecorder(region: "us-east", store: store) { $0.maximumRememberedRecords = 2 }
        try BillingFixture.record(1...5, of: tenant, at: recorder)
        try await recorder.flush()

        #expect(try recorder.record(BillingFixture.usage(tenant, 5)) == .duplicate(BillingFixture.usage(tenant, 5), flushed: true))
        #expect(try recorder.record(BillingFixture.usage(tenant, 1)) == .accepted(BillingFixture.usage(tenant, 1)))
        let report = try await recorder.flush()
        #expect(report.recordsAlreadyCounted == 1)
        #expect(report.recordsApplied == 0)
        #expect(try await BillingFixture.storedTotals(tenant, in: store).records == 5)
    }

    /// Inside the window a duplicate is dropped; after the window and one
    /// rotation interval its keys are gone and it counts again.
    @Test func deduplicationWindowBounds() async throws {
        let clock = ManualClock()
        let store = EmbeddedLinearizableStore(clock: clock)
        func makeRecorder(_ region: String) throws -> BillingRecorder {
            try BillingFixture.makeRecorder(region: region, store: store, clock: clock) {
                $0.deduplicationWindow = .seconds(10)
                $0.leaseRotationInterval = .seconds(2)
            }
        }
        let record = BillingFixture.usage(tenant, 1)

        let east = try makeRecorder("us-east")
        _ = try east.record(record)
        try await east.flush()

        clock.advance(by: .milliseconds(9_900))
        let west = try makeRecorder("us-west")
        _ = try west.record(record)
        let inside = try await west.flush()
        #expect(inside.recordsAlreadyCounted == 1)
        #expect(try await BillingFixture.storedTotals(tenant, in: store).records == 1)

        clock.advance(by: .milliseconds(2_200))
        let leftovers = try await store.range(prefix: BillingKeys.tenantPrefix(tenant))
        #expect(leftovers.map(\.key) == [BillingKeys.totals(tenant)])

        let late = try makeRecorder("eu-west")
        _ = try late.record(record)
        let outside = try await late.flush()
        #expect(outside.recordsApplied == 1)
        #expect(try await BillingFixture.storedTotals(tenant, in: store).records == 2)
    }

    @Test func retentionLeaseRotates() async throws {
        let clock = ManualClock()
        let store = EmbeddedLinearizableStore(clock: clock)
        let recorder = try BillingFixture.makeRecorder(region: "us-east", store: store, clock: clock) {
            $0.deduplicationWindow = .seconds(60)
            $0.leaseRotationInterval = .seconds(5)
        }

        try BillingFixture.record(1...1, of: tenant, at: recorder)
        try await recorder.flush()
        clock.advance(by: .seconds(4))
        try BillingFixture.record(2...2, of: tenant, at: recorder)
        try await recorder.flush()
        clock.advance(by: .seconds(1))
        try BillingFixture.record(3...3, of: tenant, at: recorder)
        try await recorder.flush()

        let requestKeys = try await store.range(prefix: BillingKeys.tenantPrefix(tenant) + "requests/")
        let leases = requestKeys.map(\.lease)
        #expect(leases.count == 3)
        #expect(leases[0] == leases[1])
        #expect(leases[1] != leases[2])
        if let lease = leases[0] {
            #expect(try await store.leaseTimeToLive(lease).grantedTTL == .seconds(65))
        }
    }

    /// A retention lease revoked behind the region's back is replaced, and
    /// the batch goes through.
    @Test func lostRetentionLeaseIsReplaced() async throws {
        let store = EmbeddedLinearizableStore()
        let recorder = try BillingFixture.makeRecorder(region: "us-east", store: store)
        try BillingFixture.record(1...2, of: tenant, at: recorder)
        try await recorder.flush()
        let first = try #require(try await store.get(BillingKeys.request(tenant, "req-1"))?.lease)
        try await store.revokeLease(first)

        try BillingFixture.record(3...4, of: tenant, at: recorder)
        let report = try await recorder.flush()
        #expect(report.recordsApplied == 2)
        #expect(report.retries == 1)
        #expect(try await store.get(BillingKeys.request(tenant, "req-3"))?.lease != first)
    }

    /// With one attempt per batch, regions that lose the totals compare give
    /// up with `contention` and keep their records for the next flush.
    @Test func contentionKeepsRecordsBuffered() async throws {
        let store = EmbeddedLinearizableStore()
        let east = try BillingFixture.makeRecorder(region: "us-east", store: store) { $0.maximumAttemptsPerBatch = 1 }
        let west = try BillingFixture.makeRecorder(region: "us-west", store: store)
        try BillingFixture.record(1...5, of: tenant, at: west)
        try await west.flush()

        // East has never seen the totals, so its first compare expects them absent.
        try BillingFixture.record(6...10, of: tenant, at: east)
        let failure = await #expect(throws: BillingError.self) { try await east.flush() }
        #expect(failure?.code == .contention)
        #expect(east.unflushedRecordCount == 5)

        // The failed transaction read the totals, so the next attempt compares the right revision.
        try await east.flush()
        #expect(east.unflushedRecordCount == 0)
        #expect(try await BillingFixture.storedTotals(tenant, in: store).records == 10)
    }

    /// Contention on a totals read is reported as unflushed records, not an error.
    @Test func totalsReadReportsUnflushedAfterContention() async throws {
        let store = EmbeddedLinearizableStore()
        let east = try BillingFixture.makeRecorder(region: "us-east", store: store) { $0.maximumAttemptsPerBatch = 1 }
        let west = try BillingFixture.makeRecorder(region: "us-west", store: store)
        try BillingFixture.record(1...5, of: tenant, at: west)
        try await west.flush()
        try BillingFixture.record(6...7, of: tenant, at: east)

        let totals = try await east.totals(of: tenant)
        #expect(totals.records == 5)
        #expect(totals.unflushedRecords == 2)
    }

    @Test func corruptTotalsFailTheFlush() async throws {
        let store = EmbeddedLinearizableStore()
        _ = try await store.put(BillingKeys.totals(tenant), value: Array("not json".utf8))
        let recorder = try BillingFixture.makeRecorder(region: "us-east", store: store)
        try BillingFixture.record(1...2, of: tenant, at: recorder)

        let failure = await #expect(throws: BillingError.self) { try await recorder.flush() }
        #expect(failure?.code == .storeFailed)
        #expect(failure?.detail.contains(BillingKeys.totals(tenant)) == true)
        #expect(recorder.unflushedRecordCount == 2)
        #expect(try await store.get(BillingKeys.totals(tenant))?.value == Array("not json".utf8))
    }

    @Test func totalsOverflowFailsTheFlush() async throws {
        let store = EmbeddedLinearizableStore()
        let nearMaximum = JSONValue.object(["tokens": .integer(Int64.max - 1), "records": .integer(1)])
        _ = try await store.put(BillingKeys.totals(tenant), value: nearMaximum.serializedBytes())
        let recorder = try BillingFixture.makeRecorder(region: "us-east", store: store)
        try BillingFixture.record(1...2, of: tenant, at: recorder)

        let failure = await #expect(throws: BillingError.self) { try await recorder.flush() }
        #expect(failure?.code == .totalsOverflow)
        #expect(recorder.unflushedRecordCount == 2)
    }

    /// The periodic flush keeps failing while the store is cut off, and
    /// sends the records once it is back.
    @Test func periodicFlushSendsAfterOutage() async throws {
        let base = EmbeddedLinearizableStore()
        let view = PartitionableStoreView(base)
        let metrics = MetricsRegistry()
        let recorder = try BillingFixture.makeRecorder(region: "us-east", store: view, metrics: metrics) {
            $0.flushInterval = .milliseconds(10)
        }

        view.setReachable(false)
        recorder.start()
        try BillingFixture.record(1...30, of: tenant, at: recorder)
        try await BillingFixture.waitUntil("a periodic flush failed") {
            metrics.value(
                "homeport_billing_flush_failures_total", labels: ["region": "us-east", "code": "billing-store-unavailable"]) >= 1
        }
        #expect(recorder.unflushedRecordCount == 30)

        view.setReachable(true)
        try await BillingFixture.waitUntil("the periodic flush sent every record") { recorder.unflushedRecordCount == 0 }
        await recorder.stop()

        let stored = try await BillingFixture.storedTotals(tenant, in: base)
        #expect(stored.records == 30)
        #expect(metrics.value("homeport_billing_flushed_records_total", labels: ["region": "us-east", "outcome": "applied"]) == 30)
        #expect(metrics.value("homeport_billing_records_total", labels: ["region": "us-east", "outcome": "accepted"]) == 30)
    }

    @Test func stopFlushesWhatIsLeft() async throws {
        let store = EmbeddedLinearizableStore()
        let recorder = try BillingFixture.makeRecorder(region: "us-east", store: store) { $0.flushInterval = .seconds(3600) }
        recorder.start()
        try BillingFixture.record(1...4, of: tenant, at: recorder)

        await recorder.stop()
        #expect(recorder.unflushedRecordCount == 0)
        #expect(try await BillingFixture.storedTotals(tenant, in: store).records == 4)
    }

    @Test func invalidConfigurationNamesTheField() throws {
        func changed(_ change: (inout BillingRecorder.Configuration) -> Void) -> BillingRecorder.Configuration {
            var configuration = BillingRecorder.Configuration()
            change(&configuration)
            return configuration
        }
        let cases: [(field: String, configuration: BillingRecorder.Configuration)] = [
            ("billing.flushInterval", changed { $0.flushInterval = .zero }),
            ("billing.maximumRecordsPerBatch", changed { $0.maximumRecordsPerBatch = 0 }),
            ("billing.maximumRecordsPerBatch", changed { $0.maximumRecordsPerBatch = 127 }),
            ("billing.maximumPendingRecords", changed { $0.maximumPendingRecords = 0 }),
            ("billing.maximumRememberedRecords", changed { $0.maximumRememberedRecords = -1 }),
            ("billing.deduplicationWindow", changed { $0.deduplicationWindow = .milliseconds(999) }),
            ("billing.leaseRotationInterval", changed { $0.leaseRotationInterval = .zero }),
            ("billing.deduplicationWindow", changed { $0.deduplicationWindow = LinearizableStoreLimits.maximumLeaseTTL }),
            ("billing.maximumAttemptsPerBatch", changed { $0.maximumAttemptsPerBatch = 0 }),
            ("billing.maximumConcurrentTenants", changed { $0.maximumConcurrentTenants = 0 }),
            ("billing.dataDirectory", changed { $0.dataDirectory = "" }),
            ("billing.fsync", changed { $0.fsync = .periodic(.milliseconds(-1)) }),
        ]

        for (field, configuration) in cases {
            let error = #expect(throws: BillingError.self) {
                try BillingRecorder(
                    region: "us-east", configuration: configuration, store: EmbeddedLinearizableStore(), logger: BillingFixture.logger)
            }
            #expect(error?.code == .invalidConfiguration, "\(field)")
            #expect(error?.field == field)
        }
        #expect(throws: Never.self) { try BillingRecorder.Configuration().validate() }
    }

    @Test func recordRejectsInvalidFields() throws {
        let cases: [(field: String, make: () throws(BillingError) -> UsageRecord)] = [
            ("requestId", { () throws(BillingError) in try UsageRecord(tenant: tenant, requestID: "a/b", tokens: 1) }),
            ("requestId", { () throws(BillingError) in try UsageRecord(tenant: tenant, requestID: ".", tokens: 1) }),
            ("tokens", { () throws(BillingError) in try UsageRecord(tenant: tenant, requestID: "r", tokens: -1) }),
            (
                "tokens",
                { () throws(BillingError) in try UsageRecord(tenant: tenant, requestID: "r", tokens: UsageRecord.maximumTokens + 1) }
            ),
            ("model", { () throws(BillingError) in try UsageRecord(tenant: tenant, requestID: "r", model: "a\nb", tokens: 1) }),
        ]
        for (field, make) in cases {
            let error = #expect(throws: BillingError.self) { try make() }
            #expect(error?.code == .invalidRecord)
            #expect(error?.field == field)
        }
    }

    @Test func batchIDDependsOnContentOnly() throws {
        let records = (1...5).map { BillingFixture.usage(tenant, $0) }
        let batch = BillingBatch(tenant: tenant, records: records)

        #expect(BillingBatch(tenant: tenant, records: records.reversed()).id == batch.id)
        #expect(batch.id.rawValue.count == 32)
        #expect(
            batch.id.rawValue.utf8.allSatisfy {
                (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0)
            })

        let changed = try UsageRecord(tenant: tenant, requestID: "req-1", model: records[0].model, tokens: records[0].tokens + 1)
        #expect(BillingBatch(tenant: tenant, records: [changed] + records.dropFirst()).id != batch.id)
        #expect(BillingBatch(tenant: tenant, records: Array(records.dropFirst())).id != batch.id)
        #expect(batch.removing(["req-1"])?.id == BillingBatch(tenant: tenant, records: Array(records.dropFirst())).id)
        #expect(batch.removing(Set(records.map(\.requestID))) == nil)

        let other = TenantID("globex")!
        #expect(BillingBatch(tenant: other, records: (1...5).map { BillingFixture.usage(other, $0) }).id != batch.id)
    }
}
