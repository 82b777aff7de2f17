import Foundation
import Testing

@testable import Homeport

/// The durable usage log: recovery after a crash, torn and corrupt lines,
/// and compaction.
@Suite struct BillingUsageLogTests {
    let tenant = TenantID("acme")!

    @Test func recoversUnflushedAndFlushed() throws {
        let directory = BillingFixture.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }

        do {
            let log = try UsageLog(directory: directory, policy: .always)
            for number in 1...4 {
                try log.appendRecorded(BillingFixture.usage(tenant, number))
            }
            try log.appendFlushed(tenant: tenant, requestIDs: ["req-2", "req-3"])
        }

        let reopened = try UsageLog(directory: directory, policy: .always)
        #expect(reopened.recovered.pending == [BillingFixture.usage(tenant, 1), BillingFixture.usage(tenant, 4)])
        #expect(reopened.recovered.flushed == [BillingFixture.usage(tenant, 2), BillingFixture.usage(tenant, 3)])
        #expect(reopened.lineCount == 5)
    }

    @Test func tornLastLineIsDropped() throws {
        let directory = BillingFixture.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let log = try UsageLog(directory: directory, policy: .always)
            try log.appendRecorded(BillingFixture.usage(tenant, 1))
        }
        let path = directory + "/" + UsageLog.fileName
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data(#"{"recorded":{"tenant":"acme","requ"#.utf8))
        handle.closeFile()

        let reopened = try UsageLog(directory: directory, policy: .always)
        #expect(reopened.recovered.pending == [BillingFixture.usage(tenant, 1)])
        try reopened.appendRecorded(BillingFixture.usage(tenant, 2))

        let again = try UsageLog(directory: directory, policy: .always)
        #expect(again.recovered.pending == [BillingFixture.usage(tenant, 1), BillingFixture.usage(tenant, 2)])
    }

    @Test func corruptLineFailsRecovery() throws {
        let directory = BillingFixture.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let lines =
            #"{"recorded":{"tenant":"acme","requestId":"r1","tokens":1}}"# + "\n"
            + #"{"recorded":{"tenant":"acme","requestId":"r/2","tokens":1}}"# + "\n"
        try lines.write(toFile: directory + "/" + UsageLog.fileName, atomically: true, encoding: .utf8)

        let error = #expect(throws: BillingError.self) { try UsageLog(directory: directory, policy: .always) }
        #expect(error?.code == .logFailed)
        #expect(error?.detail.contains("line 2") == true)

        let recorderError = #expect(throws: BillingError.self) {
            try BillingFixture.makeRecorder(region: "us-east", store: EmbeddedLinearizableStore()) { $0.dataDirectory = directory }
        }
        #expect(recorderError?.code == .logFailed)
    }

    @Test func compactionKeepsWhatIsHeld() throws {
        let directory = BillingFixture.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }

        do {
            let log = try UsageLog(directory: directory, policy: .always)
            for number in 1...10 {
                try log.appendRecorded(BillingFixture.usage(tenant, number))
            }
            try log.compact(
                unflushed: [BillingFixture.usage(tenant, 9), BillingFixture.usage(tenant, 10)],
                remembered: [BillingFixture.usage(tenant, 7), BillingFixture.usage(tenant, 8)])
            #expect(log.lineCount == 5)
            try log.appendRecorded(BillingFixture.usage(tenant, 11))
        }

        let reopened = try UsageLog(directory: directory, policy: .always)
        #expect(reopened.recovered.pending.map(\.requestID) == ["req-9", "req-10", "req-11"])
        #expect(reopened.recovered.flushed.map(\.requestID) == ["req-7", "req-8"])
        #expect(!FileManager.default.fileExists(atPath: directory + "/" + UsageLog.fileName + ".compacting"))
    }

    /// A recorder compacts its log once flushed lines pile up, and a restart
    /// after that still finds the unflushed records.
    @Test func recorderCompactsItsLog() async throws {
        let directory = BillingFixture.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = EmbeddedLinearizableStore()

        do {
            let recorder = try BillingFixture.makeRecorder(region: "us-east", store: store) {
                $0.dataDirectory = directory
                $0.maximumRecordsPerBatch = 126
                $0.maximumRememberedRecords = 100
            }
            try BillingFixture.record(1...10_000, of: tenant, at: recorder)
            try await recorder.flush()
            try BillingFixture.record(10_001...10_003, of: tenant, at: recorder)
            try await recorder.flush(tenant: TenantID("globex")!)
        }

        let path = directory + "/" + UsageLog.fileName
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count < 200)

        let restarted = try BillingFixture.makeRecorder(region: "us-east", store: store) { $0.dataDirectory = directory }
        #expect(restarted.unflushedRecordCount == 3)
        #expect(
            try restarted.record(BillingFixture.usage(tenant, 10_000)) == .duplicate(BillingFixture.usage(tenant, 10_000), flushed: true))
        try await restarted.flush()
        #expect(try await BillingFixture.storedTotals(tenant, in: store).records == 10_003)
    }

    @Test func unwritableDirectoryFails() throws {
        let error = #expect(throws: BillingError.self) {
            try BillingFixture.makeRecorder(region: "us-east", store: EmbeddedLinearizableStore()) {
                $0.dataDirectory = "/proc/homeport-billing"
            }
        }
        #expect(error?.code == .logFailed)
    }
}
