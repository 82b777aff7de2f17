import Foundation
import Testing

@testable import Homeport

/// Flush and record latencies, printed as medians. Runs only with
/// `HOMEPORT_BENCHMARK=1`, because timings on a loaded machine mean little:
///
/// ```
/// HOMEPORT_BENCHMARK=1 swift test --skip-build --filter BillingFlushBenchmarkTests
/// ```
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["HOMEPORT_BENCHMARK"] == "1"))
struct BillingFlushBenchmarkTests {
    static let iterations = 200

    @Test func embeddedStore() async throws {
        try await Self.measureFlushes(on: EmbeddedLinearizableStore(), label: "embedded")
    }

    @Test func etcd() async throws {
        let server = try await EtcdServer.start()
        defer { server.stop() }

        try await Self.measureFlushes(on: try BillingEtcdTests.makeStore(server.clientPort), label: "etcd")
    }

    @Test func recordLatency() throws {
        let directory = BillingFixture.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let tenant = TenantID("acme")!
        let memory = try BillingFixture.makeRecorder(region: "us-east", store: EmbeddedLinearizableStore())
        let durable = try BillingFixture.makeRecorder(region: "us-east", store: EmbeddedLinearizableStore()) {
            $0.dataDirectory = directory
        }

        for (label, recorder) in [("memory", memory), ("usage log, fsync every 1 s", durable)] {
            let clock = ContinuousClock()
            var samples: [Duration] = []
            for number in 0..<20_000 {
                let record = BillingFixture.usage(tenant, number)
                let start = clock.now
                _ = try recorder.record(record)
                samples.append(clock.now - start)
            }
            print("billing record (\(label)): median \(Self.median(samples)) over \(samples.count) records")
        }
    }

    /// Flushes batches of 1 and of 100 records of one tenant, one region,
    /// and prints the median time of `flush()`.
    private static func measureFlushes(on store: any LinearizableStore, label: String) async throws {
        let tenant = TenantID("bench")!
        let recorder = try BillingFixture.makeRecorder(region: "us-east", store: store) { $0.maximumRecordsPerBatch = 100 }
        let clock = ContinuousClock()
        var next = 0

        // The first flush grants the retention lease and learns the totals.
        try BillingFixture.record([next], of: tenant, at: recorder)
        next += 1
        try await recorder.flush()

        for batchSize in [1, 100] {
            var samples: [Duration] = []
            for _ in 0..<iterations {
                try BillingFixture.record(next..<(next + batchSize), of: tenant, at: recorder)
                next += batchSize
                let start = clock.now
                try await recorder.flush()
                samples.append(clock.now - start)
            }
            print("billing flush on \(label), batch of \(batchSize): median \(median(samples)) over \(iterations) flushes")
        }

        let stored = try await BillingFixture.storedTotals(tenant, in: store)
        #expect(stored.records == Int64(next))
    }

    private static func median(_ samples: [Duration]) -> Duration {
        samples.sorted()[samples.count / 2]
    }
}
