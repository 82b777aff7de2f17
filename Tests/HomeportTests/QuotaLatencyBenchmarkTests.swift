import Foundation
import Synchronization
import Testing

@testable import Homeport

/// Measures how long a reservation takes when the local chunk has room, on
/// the embedded store with the system clock, and prints the median and p99.
/// Nothing is asserted about time: machines are noisy. Set
/// `HOMEPORT_QUOTA_BENCH_ITERATIONS` for a longer run (20,000 by default).
@Suite struct QuotaLatencyBenchmarkTests {
    static var iterations: Int {
        ProcessInfo.processInfo.environment["HOMEPORT_QUOTA_BENCH_ITERATIONS"].flatMap(Int.init) ?? 20_000
    }

    @Test func localReserveLatency() async throws {
        let store = EmbeddedLinearizableStore()
        var configuration = QuotaService.Configuration()
        // A chunk large enough that the run needs a single refill.
        configuration.sizing.minimumChunkTokens = 1_000_000_000
        let service = try QuotaService(
            region: "us-east", store: store, clock: SystemClock(), configuration: configuration,
            logger: Logger(label: "quota-bench", sink: .discarding))
        // The loop keeps the quota lease, however long a loaded machine takes.
        await service.step()
        service.start()
        let tenant = TenantID.test("bench")
        _ = try await service.setPolicy(QuotaPolicy(limit: QuotaPolicy.maximumTokens, periodSeconds: 3600), for: tenant)
        _ = try await service.reserve(tenant: tenant, requestID: .test("warm"), amount: 1)

        // One client after another.
        let clock = ContinuousClock()
        var sequential: [Duration] = []
        sequential.reserveCapacity(Self.iterations)
        var fromChunk = 0
        for index in 0..<Self.iterations {
            let start = clock.now
            let result = try await service.reserve(tenant: tenant, requestID: .test("s-\(index)"), amount: 10)
            sequential.append(clock.now - start)
            if case .granted(.chunk, _) = result.outcome { fromChunk += 1 }
        }

        // Eight clients at once.
        let concurrent = try await withThrowingTaskGroup(of: [Duration].self) { group in
            for client in 0..<8 {
                group.addTask {
                    var samples: [Duration] = []
                    for index in 0..<(Self.iterations / 8) {
                        let start = clock.now
                        _ = try await service.reserve(tenant: tenant, requestID: .test("c\(client)-\(index)"), amount: 10)
                        samples.append(clock.now - start)
                    }
                    return samples
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }

        await service.stop()
        #expect(fromChunk == Self.iterations)
        print("quota local reserve, sequential: \(Self.summary(sequential)); 8 concurrent clients: \(Self.summary(concurrent))")
    }

    static func summary(_ samples: [Duration]) -> String {
        let sorted = samples.sorted()
        func microseconds(_ quantile: Double) -> String {
            let index = min(sorted.count - 1, Int((Double(sorted.count) * quantile).rounded(.down)))
            return String(format: "%.1f µs", sorted[index].secondsValue * 1e6)
        }
        return "\(sorted.count) calls, median \(microseconds(0.5)), p99 \(microseconds(0.99)), max \(microseconds(1))"
    }
}
