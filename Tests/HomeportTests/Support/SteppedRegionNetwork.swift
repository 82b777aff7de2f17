import Synchronization

@testable import Homeport

/// An in-process network between regions whose time is a `ManualClock`
/// that only this network moves: a discrete-event simulation.
///
/// A request is delivered to one node handler of its destination region
/// after the link's one-way delay, and its response comes back after the
/// same delay, so a test can assert on simulated time. A cut link refuses
/// new requests at once, and loses requests and responses in flight.
///
/// Determinism: `run(until:)` handles one event at a time and waits, before
/// the next, until every activity it resumed or started has finished or
/// waits for the network again. That holds when every activity is started
/// through `spawn` or `every`, sends one message at a time, and awaits
/// nothing but this network. The replicator's and rate limiter's per-peer
/// steps do exactly that.
final class SteppedRegionNetwork: InterRegionTransport {
    typealias Handler = @Sendable (HTTPRequest) async -> HTTPResponse
    typealias Outcome = Result<(response: HTTPResponse, inboundDelay: Duration), ForwardingError>

    private enum Action {
        case deliver(HTTPRequest, source: String, destination: String, CheckedContinuation<Outcome, Never>)
        case respond(Outcome, source: String, destination: String, CheckedContinuation<Outcome, Never>)
        case start(@Sendable () async -> Void)
        case periodic(intervalMilliseconds: Int64, @Sendable () async -> Void)
    }

    private struct Event {
        let at: Int64
        let order: UInt64
        let action: Action
    }

    private struct State {
        var events: [Event] = []
        var nextOrder: UInt64 = 0
        /// Activities running: started or resumed, and not yet finished or
        /// waiting for the network.
        var busy = 0
        var settleWaiters: [CheckedContinuation<Void, Never>] = []
        var cutLinks: Set<RegionPair> = []
        var handlers: [String: [Handler]] = [:]
        var nextHandler: [String: Int] = [:]
        var delivered = 0
        var refused = 0

        mutating func schedule(_ action: Action, at time: Int64) {
            events.append(Event(at: time, order: nextOrder, action: action))
            nextOrder += 1
        }

        /// Marks one activity as no longer running and returns the waiters to
        /// resume when none is.
        mutating func idle() -> [CheckedContinuation<Void, Never>] {
            busy -= 1
            precondition(busy >= 0, "an activity waited for the network without being started through it")
            guard busy == 0 else { return [] }
            defer { settleWaiters = [] }
            return settleWaiters
        }
    }

    let clock: ManualClock
    let delays: [RegionPair: Duration]
    private let state = Mutex(State())

    init(clock: ManualClock, delays: [RegionPair: Duration]) {
        self.clock = clock
        self.delays = delays
    }

    /// Adds a node of `region`; requests to the region go to its nodes in turn.
    func attach(_ region: String, handler: @escaping Handler) {
        state.withLock { $0.handlers[region, default: []].append(handler) }
    }

    func cut(_ first: String, _ second: String) {
        state.withLock { _ = $0.cutLinks.insert(RegionPair(first, second)) }
    }

    func heal(_ first: String, _ second: String) {
        state.withLock { _ = $0.cutLinks.remove(RegionPair(first, second)) }
    }

    var counters: (delivered: Int, refused: Int) { state.withLock { ($0.delivered, $0.refused) } }

    func delay(from source: String, to destination: String) -> Duration {
        delays[RegionPair(source, destination)] ?? .zero
    }

    /// The largest one-way delay between any two regions.
    var maximumDelay: Duration { delays.values.max() ?? .zero }

    // MARK: Activities

    /// Starts `activity` at the current simulated time, during the next `run`.
    func spawn(_ activity: @escaping @Sendable () async -> Void) {
        let now = clock.nowMilliseconds()
        state.withLock { $0.schedule(.start(activity), at: now) }
    }

    /// Starts `activity` at `first` and then every `interval`.
    func every(_ interval: Duration, startingAt first: Int64, _ activity: @escaping @Sendable () async -> Void) {
        state.withLock { $0.schedule(.periodic(intervalMilliseconds: interval.wholeMilliseconds, activity), at: first) }
    }

    /// Handles every event due by `clock.now + duration`, then sets the clock there.
    func run(for duration: Duration) async {
        await run(until: clock.nowMilliseconds() + duration.wholeMilliseconds)
    }

    /// Handles every event due by `target`, in time order, then sets the clock to `target`.
    func run(until target: Int64) async {
        while true {
            await settled()
            guard let event = takeNextEvent(dueBy: target) else { break }
            advanceClock(to: event.at)
            await handle(event)
        }
        await settled()
        advanceClock(to: target)
    }

    private func takeNextEvent(dueBy target: Int64) -> Event? {
        state.withLock { state in
            guard
                let index = state.events.indices.min(by: {
                    (state.events[$0].at, state.events[$0].order) < (state.events[$1].at, state.events[$1].order)
                }),
                state.events[index].at <= target
            else { return nil }
            return state.events.remove(at: index)
        }
    }

    private func advanceClock(to time: Int64) {
        let now = clock.nowMilliseconds()
        if time > now { clock.advance(by: .milliseconds(time - now)) }
    }

    private func handle(_ event: Event) async {
        switch event.action {
        case .deliver(let request, let source, let destination, let continuation):
            guard let handler = reachableHandler(from: source, to: destination) else {
                resume(continuation, with: .failure(lost("request", source, destination)))
                return
            }
            let response = await handler(request)
            let inbound = delay(from: destination, to: source)
            state.withLock { state in
                state.delivered += 1
                state.schedule(
                    .respond(.success((response, inbound)), source: source, destination: destination, continuation),
                    at: event.at + inbound.wholeMilliseconds)
            }

        case .respond(let outcome, let source, let destination, let continuation):
            let linkCut = state.withLock { $0.cutLinks.contains(RegionPair(source, destination)) }
            resume(continuation, with: linkCut ? .failure(lost("response", source, destination)) : outcome)

        case .start(let activity):
            startActivity(activity)

        case .periodic(let interval, let activity):
            state.withLock { $0.schedule(.periodic(intervalMilliseconds: interval, activity), at: event.at + interval) }
            startActivity(activity)
        }
    }

    private func startActivity(_ activity: @escaping @Sendable () async -> Void) {
        state.withLock { $0.busy += 1 }
        Task {
            await activity()
            let waiters = self.state.withLock { $0.idle() }
            for waiter in waiters { waiter.resume() }
        }
    }

    private func resume(_ continuation: CheckedContinuation<Outcome, Never>, with outcome: Outcome) {
        state.withLock { $0.busy += 1 }
        continuation.resume(returning: outcome)
    }

    private func settled() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let idle = state.withLock { state -> Bool in
                guard state.busy > 0 else { return true }
                state.settleWaiters.append(continuation)
                return false
            }
            if idle { continuation.resume() }
        }
    }

    private func reachableHandler(from source: String, to destination: String) -> Handler? {
        state.withLock { state in
            guard !state.cutLinks.contains(RegionPair(source, destination)), let handlers = state.handlers[destination], !handlers.isEmpty
            else { return nil }
            let index = state.nextHandler[destination, default: 0]
            state.nextHandler[destination] = (index + 1) % handlers.count
            return handlers[index]
        }
    }

    private func lost(_ what: String, _ source: String, _ destination: String) -> ForwardingError {
        ForwardingError(.timedOut, region: destination, "the link between \(source) and \(destination) was cut; the \(what) was lost")
    }

    // MARK: InterRegionTransport

    func exchange(
        _ request: HTTPRequest, from source: String, to destination: String, extraHeaders: [(String, String)]
    ) async throws(ForwardingError) -> (response: HTTPResponse, inboundDelay: Duration) {
        var outgoing = request
        for (name, value) in extraHeaders {
            outgoing.headers[name.lowercased()] = value
        }
        let sentAt = clock.nowMilliseconds()
        let outbound = delay(from: source, to: destination)

        let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
            let (refused, waiters) = state.withLock { state -> (Bool, [CheckedContinuation<Void, Never>]) in
                guard !state.cutLinks.contains(RegionPair(source, destination)), state.handlers[destination] != nil else {
                    state.refused += 1
                    return (true, [])
                }
                state.schedule(
                    .deliver(outgoing, source: source, destination: destination, continuation), at: sentAt + outbound.wholeMilliseconds)
                return (false, state.idle())
            }
            if refused {
                continuation.resume(
                    returning: .failure(ForwardingError(.homeUnreachable, region: destination, "no route from \(source) to \(destination)"))
                )
            }
            for waiter in waiters { waiter.resume() }
        }
        return try outcome.get()
    }
}
