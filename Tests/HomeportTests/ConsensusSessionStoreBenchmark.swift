import Foundation
import Synchronization
import Testing

@testable import Homeport

/// Latency and round trips of `ConsensusSessionStore` on a local
/// single-member etcd, next to a bare etcd put on the same server. Prints
/// its numbers and asserts none, so it is skipped unless
/// `HOMEPORT_CONSENSUS_BENCHMARK` is set:
///
///     HOMEPORT_CONSENSUS_BENCHMARK=1 swift test --filter ConsensusSessionStoreBenchmark
///
/// Every call is sequential, so a latency is one caller's and includes
/// the debug build's Swift overhead. The etcd member runs with the test
/// settings of `EtcdServer` (10 ms heartbeat), on the same machine.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["HOMEPORT_CONSENSUS_BENCHMARK"] != nil), .serialized)
struct ConsensusSessionStoreBenchmark {
    static let samples = 2000
    static let content = String(repeating: "a turn of a conversation ", count: 8)
    static let tenant = TenantID("bench")!

    /// Returns the median and p99 of `samples` sequential runs of
    /// `operation`, in microseconds, and its mean round trips.
    static func measure(
        _ counting: CountingLinearizableStore, _ operation: (Int) async throws -> Void
    ) async throws -> (p50: Double, p99: Double, roundTrips: Double) {
        var durations: [Duration] = []
        durations.reserveCapacity(samples)
        let clock = ContinuousClock()
        let before = counting.roundTrips
        for index in 0..<samples {
            durations.append(try await clock.measure { try await operation(index) })
        }
        let roundTrips = Double(counting.roundTrips - before) / Double(samples)
        durations.sort()
        return (microseconds(durations[samples / 2]), microseconds(durations[samples * 99 / 100]), roundTrips)
    }

    static func microseconds(_ duration: Duration) -> Double {
        let components = duration.components
        return Double(components.seconds) * 1e6 + Double(components.attoseconds) / 1e12
    }

    @Test func latencyAndRoundTripsOnLocalEtcd() async throws {
        let server = try await EtcdServer.start()
        defer { server.stop() }
        let etcd = try EtcdLinearizableStore(configuration: EtcdLinearizableStore.Configuration(endpoints: [server.endpoint]))
        let counting = CountingLinearizableStore(etcd)
        var limits = SessionStoreLimits()
        limits.dropOldestTurns = true
        let east = ConsensusSessionStore(store: counting, limits: limits)
        let west = ConsensusSessionStore(store: counting, limits: limits)

        // One session with a full buffer (1,024 turns, so each append drops
        // the oldest), and short sessions of up to 16 turns, as most
        // conversations are.
        let id = SessionID("bench-full")!
        _ = try await east.createSession(id, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        let draft = TurnDraft(role: .user, content: Self.content, tokens: 50)
        for _ in 0..<limits.maximumTurns {
            _ = try await east.appendTurn(id, draft, nowMilliseconds: 0)
        }
        let short = (0..<(Self.samples / 16)).map { SessionID("bench-short-\($0)")! }
        for session in short {
            _ = try await east.createSession(session, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
        }

        var rows: [(String, (p50: Double, p99: Double, roundTrips: Double))] = []
        rows.append(("bare etcd put", try await Self.measure(counting) { _ in _ = try await counting.put("/bench/bare", value: [1]) }))
        rows.append(
            (
                "create session",
                try await Self.measure(counting) { index in
                    _ = try await east.createSession(
                        SessionID("bench-create-\(index)")!, tenant: Self.tenant, home: "us-east", epoch: 1, nowMilliseconds: 0)
                }
            ))
        rows.append(
            (
                "append to a session of 1-16 turns, with idempotency key",
                try await Self.measure(counting) { index in
                    _ = try await east.appendTurn(
                        short[index / 16], TurnDraft(role: .user, content: Self.content, tokens: 50, idempotencyKey: "k\(index)"),
                        nowMilliseconds: 0)
                }
            ))
        rows.append(
            (
                "append to a full buffer (1,024 turns)",
                try await Self.measure(counting) { _ in _ = try await east.appendTurn(id, draft, nowMilliseconds: 0) }
            ))
        rows.append(
            (
                "append to a full buffer, regions alternating",
                try await Self.measure(counting) { index in
                    _ = try await (index % 2 == 0 ? east : west).appendTurn(id, draft, nowMilliseconds: 0)
                }
            ))
        rows.append(
            (
                "read tail 8 of a short session",
                try await Self.measure(counting) { index in _ = try await west.readTurns(short[index / 16], .tail(8)) }
            ))
        rows.append(("read tail 8 of a full buffer", try await Self.measure(counting) { _ in _ = try await west.readTurns(id, .tail(8)) }))
        rows.append(
            (
                "read tail 8 of a full buffer, no cached state",
                try await Self.measure(counting) { _ in
                    _ = try await ConsensusSessionStore(store: counting, limits: limits).readTurns(id, .tail(8))
                }
            ))
        let lastSeq = try await east.sessionInfo(id).lastStamp.seq
        rows.append(
            (
                "read since (last 8) of a full buffer",
                try await Self.measure(counting) { _ in _ = try await west.readTurns(id, .since(lastSeq - 8)) }
            ))
        rows.append(("session info of a full buffer", try await Self.measure(counting) { _ in _ = try await west.sessionInfo(id) }))
        rows.append(
            (
                "ledger entry requested then running",
                try await Self.measure(counting) { index in
                    let callID = "c\(index % 2 == 0 ? index : index - 1)"
                    let write =
                        index % 2 == 0
                        ? LedgerWrite(callID: callID, name: "search", status: .requested) : LedgerWrite(callID: callID, status: .running)
                    _ = try await east.writeLedgerEntry(short[index / 16], write, nowMilliseconds: 0)
                }
            ))
        rows.append(
            (
                "put KV-cache refs (16 blocks)",
                try await Self.measure(counting) { index in
                    let refs = (0..<16).map { (block: Int64(index * 16 + $0), location: "gpu-\($0 % 4)") }
                    _ = try await east.putKVCacheRefs(short[index / 16], refs, ttlMilliseconds: 600_000, nowMilliseconds: 0)
                }
            ))
        rows.append(
            (
                "put value",
                try await Self.measure(counting) { index in
                    _ = try await east.putValue(short[index / 16], name: "v", value: .integer(1), nowMilliseconds: 0)
                }
            ))

        print("ConsensusSessionStore on a local single-member etcd, \(Self.samples) sequential calls each:")
        for (name, result) in rows {
            print(
                "  \(name): p50 \(String(format: "%.0f", result.p50)) µs, p99 \(String(format: "%.0f", result.p99)) µs, \(String(format: "%.2f", result.roundTrips)) round trips"
            )
        }
    }
}
