import Synchronization

/// Ships one home region's session mutations to its neighbour: the shell
/// around `ReplicationOutbox` that performs its decisions.
///
/// `enqueue` is called after each acknowledged local write and never waits,
/// because the client's response does not depend on replication. A loop task cuts
/// batches when they are due (size or age), sends up to
/// `maximumBatchesInFlight` at once to the neighbour's
/// `POST /internal/v1/replication`, and feeds each acknowledgement back to
/// the outbox. A failed send is retried after a backoff that doubles from
/// 50 ms up to 2 s, so an unreachable neighbour makes lag grow without
/// spinning.
///
/// Lag of an entry is measured from its enqueue to the moment the neighbour
/// applied it (the acknowledgement's arrival minus the delay it paid on the
/// way back).
public final class ReplicationShipper: Sendable {
    public static let path = "/internal/v1/replication"

    /// Counters and lag samples, for the demo's report and tests.
    public struct Statistics: Sendable {
        public var lagMilliseconds: [Double]
        /// When each lag sample's entry was enqueued, in milliseconds since
        /// the Unix epoch, in the order of `lagMilliseconds`: a report can
        /// leave out the entries written during an outage.
        public var lagEnqueuedAtMilliseconds: [Int64]
        public var batchesSent: Int
        public var batchesFailed: Int
        public var snapshotFallbacks: Int
        public var pendingEntries: Int
    }

    private struct State {
        var outbox: ReplicationOutbox
        /// Enqueue times of unacknowledged entries, per session in seq order.
        var enqueuedAt: [SessionID: [(seq: UInt64, milliseconds: Int64)]] = [:]
        var inFlight = 0
        var retryNotBefore: Int64 = 0
        var backoffMilliseconds: Int64 = 0
        var wakeUp: CheckedContinuation<Void, Never>?
        /// Set when there was work for the loop while it was not waiting, so
        /// that its next wait returns at once instead of missing the wake-up.
        var wakePending = false
        /// Callers of `drained()` waiting for the outbox to empty.
        var drainWaiters: [CheckedContinuation<Void, Never>] = []
        var stopped = false
        var lagMilliseconds: [Double] = []
        var lagEnqueuedAtMilliseconds: [Int64] = []
        var batchesFailed = 0
        /// Entries in `enqueuedAt`, kept within the outbox's bound.
        var enqueuedAtCount = 0

        /// Takes the loop's continuation to resume it, or records that work
        /// arrived while the loop was not waiting.
        mutating func takeWakeUp() -> CheckedContinuation<Void, Never>? {
            guard let continuation = wakeUp else {
                wakePending = true
                return nil
            }
            wakeUp = nil
            return continuation
        }
    }

    /// Lag samples kept for the report; the histogram metric counts them all.
    static let maximumLagSamples = 1_000_000

    public let region: String
    public let neighbour: String
    private let peers: any InterRegionTransport
    private let store: any SessionStore
    private let keyRing: TokenKeyRing
    private let clock: any WallClock
    private let metrics: MetricsRegistry
    private let logger: Logger
    private let maximumBatchesInFlight: Int
    /// The outbox and everything the loop and the senders share.
    private let state: Mutex<State>
    private let loop = Mutex<Task<Void, Never>?>(nil)

    public init(
        region: String, neighbour: String, configuration: ReplicationOutbox.Configuration, maximumBatchesInFlight: Int = 8,
        peers: any InterRegionTransport, store: any SessionStore, keyRing: TokenKeyRing, clock: any WallClock,
        metrics: MetricsRegistry, logger: Logger
    ) throws(ConfigurationError) {
        self.region = region
        self.neighbour = neighbour
        self.peers = peers
        self.store = store
        self.keyRing = keyRing
        self.clock = clock
        self.metrics = metrics
        self.logger = logger.with(["region": region, "neighbour": neighbour])
        self.maximumBatchesInFlight = maximumBatchesInFlight
        self.state = Mutex(State(outbox: try ReplicationOutbox(configuration: configuration)))
    }

    /// Adds a mutation the home has stored. It takes one short lock and cannot
    /// fail: past the outbox's bound it requests a snapshot instead. With
    /// `measuresLag` false the entry gives no lag sample (background work,
    /// not a client write).
    public func enqueue(_ entry: ReplicationEntry, measuresLag: Bool = true) {
        let now = clock.nowMilliseconds()
        let (action, wakeUp) = state.withLock { state in
            let action = state.outbox.enqueue(entry, nowMilliseconds: now, background: !measuresLag)
            // Past the outbox's bound, entries are coalesced into snapshots and
            // their enqueue times are not kept, so they give no lag sample.
            if measuresLag, state.enqueuedAtCount < state.outbox.configuration.maximumPendingEntries {
                state.enqueuedAt[entry.session, default: []].append((entry.seq, now))
                state.enqueuedAtCount += 1
            }
            return (action, state.takeWakeUp())
        }
        wakeUp?.resume()
        if let action { perform(action) }
    }

    public func start() {
        loop.withLock { task in
            guard task == nil else { return }
            task = Task { await self.run() }
        }
        logger.info("replication started")
    }

    /// Stops the loop; batches in flight finish on their own. Callers of
    /// `drained()` are released, drained or not.
    public func stop() async {
        let (wakeUp, drainWaiters) = state.withLock { state in
            state.stopped = true
            defer { state.drainWaiters = [] }
            return (state.takeWakeUp(), state.drainWaiters)
        }
        wakeUp?.resume()
        for waiter in drainWaiters { waiter.resume() }
        let task = loop.withLock { $0 }
        task?.cancel()
        await task?.value
        logger.info("replication stopped")
    }

    /// Returns once every entry enqueued so far has been acknowledged, at once
    /// if none is pending, or when `stop()` is called. While the neighbour is
    /// unreachable it waits until then.
    public func drained() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let isDrained = state.withLock { state -> Bool in
                guard state.outbox.pendingEntryCount > 0, !state.stopped else { return true }
                state.drainWaiters.append(continuation)
                return false
            }
            if isDrained { continuation.resume() }
        }
    }

    public func statistics() -> Statistics {
        state.withLock { state in
            Statistics(
                lagMilliseconds: state.lagMilliseconds, lagEnqueuedAtMilliseconds: state.lagEnqueuedAtMilliseconds,
                batchesSent: state.outbox.sentBatchCount,
                batchesFailed: state.batchesFailed, snapshotFallbacks: state.outbox.snapshotCount,
                pendingEntries: state.outbox.pendingEntryCount)
        }
    }

    // MARK: Loop

    private enum Step {
        case send([ReplicationBatch])
        case sleep(until: Int64)
        case wait
        case stop
    }

    /// Sends every batch that is due now, one after another, and returns once
    /// each has been acknowledged or has failed. It serves a caller that drives
    /// time itself instead of running the loop, as the fault-injection harness
    /// does. A failure backs off exactly as in the loop.
    public func shipDueBatches() async {
        let now = clock.nowMilliseconds()
        let batches = state.withLock { state -> [ReplicationBatch] in
            guard now >= state.retryNotBefore else { return [] }
            return takeDueBatches(&state, nowMilliseconds: now)
        }
        for batch in batches {
            await send(batch)
        }
    }

    /// Cuts the batches due at `now`, up to the in-flight limit, and counts them in flight.
    private func takeDueBatches(_ state: inout State, nowMilliseconds now: Int64) -> [ReplicationBatch] {
        var batches: [ReplicationBatch] = []
        while state.inFlight < maximumBatchesInFlight, let batch = state.outbox.nextBatch(nowMilliseconds: now) {
            state.inFlight += 1
            batches.append(batch)
        }
        return batches
    }

    private func run() async {
        while true {
            let now = clock.nowMilliseconds()
            let step = state.withLock { state -> Step in
                if state.stopped { return .stop }
                if now < state.retryNotBefore { return .sleep(until: state.retryNotBefore) }
                let batches = takeDueBatches(&state, nowMilliseconds: now)
                if !batches.isEmpty { return .send(batches) }
                if state.inFlight < maximumBatchesInFlight, let deadline = state.outbox.nextBatchDeadlineMilliseconds {
                    return .sleep(until: deadline)
                }
                return .wait
            }

            switch step {
            case .stop:
                return
            case .send(let batches):
                for batch in batches {
                    Task { await self.send(batch) }
                }
            case .sleep(let deadline):
                try? await clock.sleep(for: .milliseconds(max(1, deadline - now)))
            case .wait:
                await waitForWork()
            }
        }
    }

    /// Suspends until an enqueue, a finished batch or `stop` wakes the loop.
    private func waitForWork() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if state.stopped || state.wakePending {
                    state.wakePending = false
                    return true
                }
                state.wakeUp = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    private func send(_ batch: ReplicationBatch) async {
        let body = batch.json.serializedBytes()
        var request = HTTPRequest(method: "POST", path: Self.path, body: body)
        request.headers["content-type"] = "application/json"
        let headers = [(PeerSignature.header, PeerSignature.sign(body, with: keyRing)), (RegionNode.forwardedFromHeader, region)]

        do {
            let (response, inboundDelay) = try await peers.exchange(request, from: region, to: neighbour, extraHeaders: headers)
            guard response.status == 200 else {
                throw ReplicationSendFailure(
                    detail: "the neighbour answered \(response.status): \(String(decoding: response.body.prefix(300), as: UTF8.self))")
            }
            let acknowledgement: ReplicationAcknowledgement
            do {
                acknowledgement = try ReplicationAcknowledgement(jsonBytes: response.body)
            } catch {
                throw ReplicationSendFailure(detail: "the neighbour's acknowledgement is invalid: \(error)")
            }
            acknowledged(batch, acknowledgement, appliedAt: clock.nowMilliseconds() - inboundDelay.wholeMilliseconds)
        } catch {
            failed(batch, error)
        }
    }

    private func acknowledged(_ batch: ReplicationBatch, _ acknowledgement: ReplicationAcknowledgement, appliedAt: Int64) {
        let (actions, wakeUp, lags, pending, drainWaiters) = state.withLock { state in
            let actions = state.outbox.acknowledge(acknowledgement)
            var lags: [Double] = []
            var enqueueTimes: [Int64] = []
            for (session, position) in acknowledgement.positions {
                guard var times = state.enqueuedAt[session] else { continue }
                let applied = times.prefix { $0.seq <= position }
                lags.append(contentsOf: applied.map { Double(max(0, appliedAt - $0.milliseconds)) })
                enqueueTimes.append(contentsOf: applied.map(\.milliseconds))
                times.removeFirst(applied.count)
                state.enqueuedAtCount -= applied.count
                state.enqueuedAt[session] = times.isEmpty ? nil : times
            }
            let room = max(0, Self.maximumLagSamples - state.lagMilliseconds.count)
            state.lagMilliseconds.append(contentsOf: lags.prefix(room))
            state.lagEnqueuedAtMilliseconds.append(contentsOf: enqueueTimes.prefix(room))
            state.inFlight -= 1
            state.backoffMilliseconds = 0
            var drainWaiters: [CheckedContinuation<Void, Never>] = []
            if state.outbox.pendingEntryCount == 0 {
                swap(&drainWaiters, &state.drainWaiters)
            }
            return (actions, state.takeWakeUp(), lags, state.outbox.pendingEntryCount, drainWaiters)
        }
        wakeUp?.resume()
        for waiter in drainWaiters { waiter.resume() }

        for lag in lags {
            metrics.observe(
                "homeport_replication_lag_seconds", help: "Time from a home's write to its neighbour applying it.",
                labels: ["region": region, "neighbour": neighbour], seconds: lag / 1000)
        }
        metrics.setGauge(
            "homeport_replication_lag_entries", help: "Entries written at the home and not yet acknowledged by its neighbour.",
            labels: ["region": region, "neighbour": neighbour], to: Double(pending))
        metrics.increment(
            "homeport_replication_batches_total", help: "Replication batches acknowledged by the neighbour.",
            labels: ["region": region, "neighbour": neighbour])
        for action in actions { perform(action) }
    }

    private func failed(_ batch: ReplicationBatch, _ error: any Error) {
        let now = clock.nowMilliseconds()
        let (wakeUp, backoff, failures) = state.withLock { state in
            state.outbox.batchFailed(batch.id)
            state.inFlight -= 1
            state.batchesFailed += 1
            state.backoffMilliseconds = min(2000, max(50, state.backoffMilliseconds * 2))
            state.retryNotBefore = now + state.backoffMilliseconds
            return (state.takeWakeUp(), state.backoffMilliseconds, state.batchesFailed)
        }
        wakeUp?.resume()
        metrics.increment(
            "homeport_replication_failures_total", help: "Replication batches that failed and will be resent.",
            labels: ["region": region, "neighbour": neighbour])
        // Log the first failure of a run of failures, then every hundredth.
        if failures % 100 == 1 || backoff == 50 {
            logger.warning(
                "replication batch failed", ["batch": batch.id.description, "retryInMilliseconds": "\(backoff)", "error": "\(error)"])
        }
    }

    private func perform(_ action: ReplicationOutbox.Action) {
        switch action {
        case .readSnapshot(let session):
            Task { await self.coalesce(session) }
        }
    }

    private func coalesce(_ session: SessionID) async {
        do {
            let current = try await store.replicatedState(session)
            let entry = ReplicationEntry.snapshot(current.info, turns: current.turns, ledger: current.ledger, values: current.values)
            state.withLock { $0.outbox.coalesce(entry, nowMilliseconds: clock.nowMilliseconds()) }
            metrics.increment(
                "homeport_replication_snapshots_total", help: "Sessions whose pending entries were coalesced into a snapshot.",
                labels: ["region": region, "neighbour": neighbour])
        } catch {
            state.withLock { $0.outbox.snapshotFailed(session) }
            logger.warning("replication snapshot failed", ["session": session.rawValue, "error": "\(error)"])
        }
    }
}

private struct ReplicationSendFailure: Error, CustomStringConvertible {
    let detail: String
    var description: String { detail }
}
