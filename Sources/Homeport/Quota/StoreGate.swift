import Synchronization

/// Lets one task at a time make store round trips for one tenant, in arrival
/// order, so a burst of requests that find the chunk empty causes one refill
/// rather than one compare-and-swap per request.
///
/// NOTE: a task waiting in `enter()` is not woken by cancellation; it waits
/// for its turn like the others.
final class StoreGate: Sendable {
    private struct State {
        var isHeld = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    /// Whether a task has the gate, and the tasks waiting, first in line first.
    private let state = Mutex(State())

    /// Waits until the gate is free and takes it.
    func enter() async {
        let taken = state.withLock { state -> Bool in
            guard !state.isHeld else { return false }
            state.isHeld = true
            return true
        }
        if taken { return }

        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let takenNow = state.withLock { state -> Bool in
                guard state.isHeld else {
                    state.isHeld = true
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if takenNow { continuation.resume() }
        }
    }

    /// Takes the gate if it is free, without waiting. Returns false when another task has it.
    func tryEnter() -> Bool {
        state.withLock { state in
            guard !state.isHeld else { return false }
            state.isHeld = true
            return true
        }
    }

    /// Hands the gate to the next waiting task, or frees it.
    func leave() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.waiters.isEmpty else {
                state.isHeld = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
