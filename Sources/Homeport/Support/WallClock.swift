import Foundation
import Synchronization

/// The one source of time for Homeport's protocols: wall-clock milliseconds
/// since the Unix epoch (token issue and expiry, turn timestamps) and sleeping
/// (injected latency, deadlines). Tests drive a `ManualClock` instead.
public protocol WallClock: Sendable {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    func nowMilliseconds() -> Int64

    /// Milliseconds on a clock that never steps backwards (unlike the wall
    /// clock under NTP), for measuring how long a lease stays valid.
    func monotonicMilliseconds() -> Int64

    /// Suspends for `duration`; throws `CancellationError` when the task is cancelled.
    func sleep(for duration: Duration) async throws
}

extension WallClock {
    /// Returns the wall time, which is enough for a clock that only moves
    /// forward, like `ManualClock`.
    public func monotonicMilliseconds() -> Int64 { nowMilliseconds() }
}

/// The operating system's clock.
public struct SystemClock: WallClock {
    public init() {}

    public func nowMilliseconds() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }

    public func monotonicMilliseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) * 1000 + Int64(time.tv_nsec) / 1_000_000
    }

    public func sleep(for duration: Duration) async throws {
        try await Task.sleep(for: duration)
    }
}

/// A clock that moves only when a test calls `advance(by:)`.
///
/// Sleepers resume, in deadline order, once the clock has advanced past their
/// deadline; cancelling a sleeper resumes it with `CancellationError`.
public final class ManualClock: WallClock {
    private struct Sleeper {
        let id: UInt64
        let deadline: Int64
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now: Int64
        var nextSleeperID: UInt64 = 0
        var sleepers: [Sleeper] = []
    }

    /// The current time and the sleepers waiting for it.
    private let state: Mutex<State>

    public init(startMilliseconds: Int64 = 1_800_000_000_000) {
        state = Mutex(State(now: startMilliseconds))
    }

    public func nowMilliseconds() -> Int64 {
        state.withLock { $0.now }
    }

    /// Moves the clock forward and resumes every sleeper whose deadline passed.
    public func advance(by duration: Duration) {
        let due: [Sleeper] = state.withLock { state in
            state.now += duration.wholeMilliseconds
            let now = state.now
            let due = state.sleepers.filter { $0.deadline <= now }
            state.sleepers.removeAll { $0.deadline <= now }
            return due.sorted { $0.deadline < $1.deadline }
        }
        for sleeper in due {
            sleeper.continuation.resume()
        }
    }

    public func sleep(for duration: Duration) async throws {
        let id = state.withLock { state -> UInt64 in
            state.nextSleeperID += 1
            return state.nextSleeperID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let resumeNow = state.withLock { state -> Bool in
                    let deadline = state.now + duration.wholeMilliseconds
                    if deadline <= state.now || Task.isCancelled { return true }
                    state.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
                    return false
                }
                if resumeNow {
                    if Task.isCancelled {
                        continuation.resume(throwing: CancellationError())
                    } else {
                        continuation.resume()
                    }
                }
            }
        } onCancel: {
            let cancelled = state.withLock { state -> Sleeper? in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return state.sleepers.remove(at: index)
            }
            cancelled?.continuation.resume(throwing: CancellationError())
        }
    }
}

extension Duration {
    /// The duration in whole milliseconds, rounded toward zero.
    public var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// The duration in seconds as a floating-point number.
    public var secondsValue: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
