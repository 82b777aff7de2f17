import Synchronization

/// A sequential specification for `LinearizabilityChecker`: a state that
/// either accepts an operation with the output it returned, moving to the
/// next state, or rejects it.
protocol SequentialModel: Hashable, Sendable {
    associatedtype Input: Sendable
    associatedtype Output: Sendable

    /// Returns the state after `input` when the model allows `output` for it, else nil.
    func step(_ input: Input, _ output: Output) -> Self?
}

/// One completed operation of a concurrent history: what was called, what
/// it returned, and when. `call` and `response` come from one counter shared
/// by every client, so `a.response < b.call` means a returned before b began.
struct HistoryOperation<Input: Sendable, Output: Sendable>: Sendable {
    let id: Int
    /// The client (or region) that ran it, for messages.
    let client: String
    let input: Input
    let output: Output
    let call: UInt64
    let response: UInt64
}

/// Records operations with their call and response times from one shared counter.
final class HistoryRecorder<Input: Sendable, Output: Sendable>: Sendable {
    private let ticks = Atomic<UInt64>(0)
    /// The completed operations, in the order they completed.
    private let operations = Mutex<[HistoryOperation<Input, Output>]>([])

    /// Runs `body` and records it as one operation of `client`.
    @discardableResult
    func record(client: String, _ input: Input, _ body: () async -> Output) async -> Output {
        await recordIfPresent(client: client, input, body)!
    }

    /// Runs `body` and records it unless it returns nil, for an operation
    /// that has no effect and whose result the model cannot judge.
    @discardableResult
    func recordIfPresent(client: String, _ input: Input, _ body: () async -> Output?) async -> Output? {
        let call = ticks.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue
        guard let output = await body() else { return nil }
        let response = ticks.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue
        operations.withLock { operations in
            operations.append(
                HistoryOperation(id: operations.count, client: client, input: input, output: output, call: call, response: response))
        }
        return output
    }

    var history: [HistoryOperation<Input, Output>] {
        operations.withLock { $0 }
    }
}

/// The verdict of a linearizability check.
enum LinearizabilityVerdict: Equatable {
    /// `order` lists operation ids in an order that the model accepts and
    /// that respects real time.
    case linearizable(order: [Int])
    /// No order exists. `longestPrefix` is the longest accepted prefix the
    /// search found, to show where the history goes wrong.
    case notLinearizable(longestPrefix: [Int])
    /// The search gave up after `steps` steps; the history is undecided.
    case unknown(steps: Int)

    var isLinearizable: Bool {
        if case .linearizable = self { return true }
        return false
    }
}

/// Checks a history against a sequential model with the search of Wing and
/// Gong plus a cache of visited configurations, one of the algorithms that
/// Gavin Lowe compares in "Testing for Linearizability" (Concurrency and
/// Computation: Practice and Experience). The search walks the
/// history's call and response events in time order and linearizes an
/// operation at its call when the model accepts it. At a response whose call
/// is not linearized yet it backtracks, and it skips configurations
/// (linearized set, model state) it has already seen.
///
/// The search is exponential in the worst case, so it stops after
/// `maximumSteps` and returns `unknown`. Keep histories small and split them
/// by independent keys (such as tenants) before checking.
struct LinearizabilityChecker<Model: SequentialModel> {
    var maximumSteps = 2_000_000

    private struct Configuration: Hashable {
        let linearized: [UInt64]
        let state: Model
    }

    func check(_ history: [HistoryOperation<Model.Input, Model.Output>], initial: Model) -> LinearizabilityVerdict {
        let count = history.count
        guard count > 0 else { return .linearizable(order: []) }

        // Events in time order: index i < count is operation i's call, and
        // count + i its response. The list is circular through `head`.
        var events: [(time: UInt64, event: Int)] = []
        for (index, operation) in history.enumerated() {
            events.append((operation.call, index))
            events.append((operation.response, count + index))
        }
        events.sort { $0.time < $1.time }

        let head = 2 * count
        var next = Array(repeating: head, count: 2 * count + 1)
        var previous = Array(repeating: head, count: 2 * count + 1)
        var last = head
        for (_, event) in events {
            next[last] = event
            previous[event] = last
            last = event
        }
        next[last] = head
        previous[head] = last

        func unlink(_ event: Int) {
            next[previous[event]] = next[event]
            previous[next[event]] = previous[event]
        }
        func relink(_ event: Int) {
            next[previous[event]] = event
            previous[next[event]] = event
        }

        var linearized = Array(repeating: UInt64(0), count: (count + 63) / 64)
        var seen: Set<Configuration> = []
        var stack: [(operation: Int, state: Model)] = []
        var longest: [Int] = []
        var state = initial
        var event = next[head]
        var steps = 0

        while next[head] != head {
            steps += 1
            guard steps <= maximumSteps else { return .unknown(steps: steps) }

            if event < count {
                // A call: try to linearize the operation here.
                let operation = history[event]
                if let after = state.step(operation.input, operation.output) {
                    var marked = linearized
                    marked[event / 64] |= 1 << UInt64(event % 64)
                    if seen.insert(Configuration(linearized: marked, state: after)).inserted {
                        stack.append((event, state))
                        state = after
                        linearized = marked
                        unlink(event)
                        unlink(count + event)
                        if stack.count > longest.count { longest = stack.map(\.operation) }
                        event = next[head]
                        continue
                    }
                }
                event = next[event]
            } else {
                // A response whose call is not linearized: undo the last choice.
                guard let (operation, before) = stack.popLast() else {
                    return .notLinearizable(longestPrefix: longest.map { history[$0].id })
                }
                state = before
                linearized[operation / 64] &= ~(1 << UInt64(operation % 64))
                relink(count + operation)
                relink(operation)
                event = next[operation]
            }
        }
        return .linearizable(order: stack.map { history[$0.operation].id })
    }
}
