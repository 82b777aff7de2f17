import Synchronization

/// Runs one store's writes to a session one at a time, in arrival order.
///
/// Writes to one session from one store would otherwise race for the same
/// meta revision, and all but one would lose the compare and retry. Queued,
/// each write starts from the state the previous one left in the cache and
/// usually commits in one transaction. Writes to different sessions do not
/// wait for each other.
final class SessionWriteQueue: Sendable {
    /// The waiting writers of every session that has a running write; a
    /// session without a running write has no entry.
    private let waiters = Mutex<[SessionID: [CheckedContinuation<Void, Never>]]>([:])

    /// Runs `body` once every earlier write to the session has finished.
    /// Cancellation does not skip the queue: `body` still runs in turn.
    func run<Value>(
        _ id: SessionID, _ body: () async throws(SessionStoreError) -> Value
    ) async throws(SessionStoreError) -> Value {
        await acquire(id)
        defer { release(id) }
        return try await body()
    }

    private func acquire(_ id: SessionID) async {
        let acquired = waiters.withLock { waiters in
            guard waiters[id] == nil else { return false }
            waiters[id] = []
            return true
        }
        if acquired { return }

        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquiredNow = waiters.withLock { waiters in
                guard waiters[id] != nil else {
                    waiters[id] = []
                    return true
                }
                waiters[id]?.append(continuation)
                return false
            }
            if acquiredNow { continuation.resume() }
        }
    }

    /// Hands the session to its next waiter, or frees it when none waits.
    private func release(_ id: SessionID) {
        let next = waiters.withLock { waiters -> CheckedContinuation<Void, Never>? in
            guard var queue = waiters[id], !queue.isEmpty else {
                waiters[id] = nil
                return nil
            }
            let next = queue.removeFirst()
            waiters[id] = queue
            return next
        }
        next?.resume()
    }
}
