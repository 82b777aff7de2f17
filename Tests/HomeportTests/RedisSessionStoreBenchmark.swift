import Foundation
import Synchronization
import Testing

@testable import Homeport

/// Latency and throughput of `RedisSessionStore` on loopback, next to
/// `redis-benchmark` on the same server. Prints its numbers and asserts
/// none, so it is skipped unless `HOMEPORT_REDIS_BENCHMARK` is set:
///
///     HOMEPORT_REDIS_BENCHMARK=1 swift test --filter RedisSessionStoreBenchmark
///
/// NOTE: this runs in a debug build, whose Swift code is several times
/// slower than a release build. Building the tests in release mode with
/// Swift 6.3.1 crashes the compiler (signal 11 while it splits a coroutine of
/// SessionAPITests), so docs/redis-session-store.md gives release numbers
/// from a separate executable that makes the same calls.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["HOMEPORT_REDIS_BENCHMARK"] != nil), .serialized)
struct RedisSessionStoreBenchmark {
    static let samples = 5000
    static let content = String(repeating: "a turn of a conversation ", count: 8)

    /// Returns the percentile of sorted durations, in microseconds.
    static func microseconds(_ sorted: [Duration], _ percentile: Double) -> Double {
        let index = min(sorted.count - 1, Int((Double(sorted.count) * percentile).rounded(.down)))
        let components = sorted[index].components
        return Double(components.seconds) * 1e6 + Double(components.attoseconds) / 1e12
    }

    /// Times `operation` `samples` times in a row and returns p50 and p99.
    static func latency(_ operation: () async throws -> Void) async throws -> (p50: Double, p99: Double) {
        var durations: [Duration] = []
        durations.reserveCapacity(samples)
        let clock = ContinuousClock()
        for _ in 0..<samples {
            durations.append(try await clock.measure { try await operation() })
        }
        durations.sort()
        return (microseconds(durations, 0.5), microseconds(durations, 0.99))
    }

    /// Runs `callers` tasks that each append `perCaller` turns (to a session
    /// of their own, or all to one) and returns appends per second.
    static func throughput(_ store: RedisSessionStore, callers: Int, perCaller: Int, oneSession: Bool) async throws -> Double {
        let ids = (0..<callers).map { SessionID("bench-\(callers)-\(oneSession)-\(oneSession ? 0 : $0)")! }
        for id in Set(ids) {
            _ = try await store.createSession(id, tenant: TenantID("bench")!, home: "us-east", epoch: 1, nowMilliseconds: 0)
        }
        let clock = ContinuousClock()
        let elapsed = try await clock.measure {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for caller in 0..<callers {
                    group.addTask {
                        for _ in 0..<perCaller {
                            _ = try await store.appendTurn(
                                ids[caller], TurnDraft(role: .user, content: content, tokens: 50), nowMilliseconds: 0)
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        let components = elapsed.components
        let seconds = Double(components.seconds) + Double(components.attoseconds) / 1e18
        return Double(callers * perCaller) / seconds
    }

    static func redisBenchmark(port: UInt16, clients: Int) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-benchmark")
        process.arguments = [
            "-h", "127.0.0.1", "-p", String(port), "-t", "set,get,lpush", "-P", "1", "-n", "100000", "-c", String(clients), "-q",
        ]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        // redis-benchmark redraws a progress line with carriage returns before
        // it prints each result line.
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap { line in
            line.split(separator: "\r").last.map { $0.trimmingCharacters(in: .whitespaces) }
        }
        return lines.filter { !$0.isEmpty }.joined(separator: "\n")
    }

    @Test func latencyAndThroughputNextToRedisBenchmark() async throws {
        let server = try await RedisServer.start()
        defer { server.stop() }
        var configuration = server.configuration(keyPrefix: "bench", threadCount: 4)
        configuration.commandTimeout = .seconds(10)
        var limits = SessionStoreLimits()
        limits.dropOldestTurns = true
        let store = try RedisSessionStore(configuration: configuration, limits: limits, logger: Logger(label: "bench", sink: .discarding))
        defer { store.shutdown() }

        let id = SessionID("bench-latency")!
        _ = try await store.createSession(id, tenant: TenantID("bench")!, home: "us-east", epoch: 1, nowMilliseconds: 0)
        let draft = TurnDraft(role: .user, content: Self.content, tokens: 50)
        for _ in 0..<1100 {
            _ = try await store.appendTurn(id, draft, nowMilliseconds: 0)
        }

        // The buffer is full (1,024 turns), so each append also drops the oldest.
        let append = try await Self.latency { _ = try await store.appendTurn(id, draft, nowMilliseconds: 0) }
        let keyed = Atomic<Int>(0)
        let appendWithKey = try await Self.latency {
            let key = "k\(keyed.add(1, ordering: .relaxed).newValue)"
            _ = try await store.appendTurn(
                id, TurnDraft(role: .user, content: Self.content, tokens: 50, idempotencyKey: key), nowMilliseconds: 0)
        }
        let tail = try await Self.latency { _ = try await store.readTurns(id, .tail(8)) }
        let info = try await Self.latency { _ = try await store.sessionInfo(id) }
        let value = try await Self.latency { _ = try await store.putValue(id, name: "v", value: .integer(1), nowMilliseconds: 0) }

        print("RedisSessionStore latency on loopback, \(Self.samples) sequential calls each (µs):")
        for (name, result) in [
            ("append (200 B, drop-oldest)", append), ("append with idempotency key", appendWithKey), ("read tail 8", tail),
            ("session info", info), ("put value", value),
        ] {
            print("  \(name): p50 \(String(format: "%.0f", result.p50)), p99 \(String(format: "%.0f", result.p99))")
        }

        print("RedisSessionStore appends per second, 4 I/O threads:")
        for callers in [1, 4, 16, 64] {
            let perCaller = max(20_000 / callers, 200)
            let separate = try await Self.throughput(store, callers: callers, perCaller: perCaller, oneSession: false)
            let shared = try await Self.throughput(store, callers: callers, perCaller: perCaller, oneSession: true)
            print(
                "  \(callers) callers: \(String(format: "%.0f", separate))/s on own sessions, \(String(format: "%.0f", shared))/s on one session"
            )
        }

        for clients in [1, 50] {
            print("redis-benchmark -t set,get,lpush -P 1 -n 100000 -c \(clients):")
            print(try Self.redisBenchmark(port: server.port, clients: clients))
        }
    }
}
