import Foundation
import Synchronization

/// Settings of a trace replay against a set of regions.
public struct ReplayConfiguration: Sendable {
    /// Trace time is divided by this: 30 plays the 59-minute trace in about two minutes.
    public var timeCompression: Double = 30
    /// Share of follow-up requests that enter at a region other than the session's first.
    public var roamingShare: Double = 0.05
    /// Share of requests that also record a tool call through requested → running → succeeded.
    public var toolCallShare: Double = 0.1
    public var seed: UInt64 = 42
    /// How many turns each request reads back before appending.
    public var tailTurns: Int = 2
    /// Bytes of generated content per trace token.
    public var bytesPerToken: Int = 4
    public var tenant: String = "demo"
    /// Attempts per call for transport failures and 502/503/504, with the same idempotency key.
    public var maximumAttempts: Int = 3
    /// The Mooncake trace rounds arrival times to about 3 s (70% of them are
    /// whole seconds and up to 28 requests share one), so its real spacing is
    /// unknown. When true, requests that share a timestamp start evenly spread
    /// over the interval to the next distinct timestamp. When false they start
    /// together, as a burst.
    public var spreadSharedTimestamps: Bool = true
    /// When true, roaming reads of the buffer tail allow a stale answer from a
    /// standby copy (`Homeport-Stale-Read: allow`), as a client that tolerates
    /// invisible staleness would.
    public var staleReadsWhenRoaming: Bool = true
    /// A region to crash part way through the replay, and when it goes down and
    /// comes back, as fractions of the replay's trace time. Nil crashes none.
    public var failure: RegionFailure?
    /// When true, every request also reads the router weights at its entry
    /// region and reserves its tokens against the tenant's quota before it
    /// runs. After it runs, it commits the real count and records its usage
    /// for billing. The router weights change once, half way through.
    public var crossSessionState = false
    /// The tenant's quota for the replay, in tokens per period.
    public var quotaLimit: Int64 = 1_000_000_000_000

    public init() {}

    /// A region that goes down and comes back during a replay.
    public struct RegionFailure: Sendable, Equatable {
        public var region: String
        public var downAt: Double
        public var upAt: Double

        public init(region: String, downAt: Double = 0.4, upAt: Double = 0.7) {
            self.region = region
            self.downAt = downAt
            self.upAt = upAt
        }
    }

    public func validate() throws(ConfigurationError) {
        if let failure {
            guard 0 < failure.downAt, failure.downAt < failure.upAt, failure.upAt < 1 else {
                throw ConfigurationError(
                    field: "fail-at",
                    detail:
                        "the failure must start and end inside the replay: --fail-at \(failure.downAt) and --recover-at \(failure.upAt) must satisfy 0 < fail-at < recover-at < 1"
                )
            }
        }
        guard timeCompression > 0, timeCompression.isFinite else {
            throw ConfigurationError(field: "speed", detail: "the time compression must be a positive number, got \(timeCompression)")
        }
        guard (0...1).contains(roamingShare) else {
            throw ConfigurationError(field: "roaming", detail: "the roaming share must be from 0 to 1, got \(roamingShare)")
        }
        guard (0...1).contains(toolCallShare) else {
            throw ConfigurationError(field: "tool-calls", detail: "the tool-call share must be from 0 to 1, got \(toolCallShare)")
        }
        guard TenantID(tenant) != nil else {
            throw ConfigurationError(field: "tenant", detail: "tenant \"\(tenant)\" is not \(TenantID.allowedCharactersDescription)")
        }
    }
}

/// A cluster operation the replay requests to inject a failure.
public enum FaultAction: Sendable, Equatable {
    case crash(String)
    case restart(String)
}

/// A session's handle in its replay task. A response that re-homes the
/// session replaces the token. Used by one task only.
final class SessionHolder {
    /// The region where the session's first request entered, which created it.
    let firstEntry: String
    var handle: SessionHandle?
    var rehomed = false

    init(firstEntry: String) {
        self.firstEntry = firstEntry
    }
}

/// The result of a replay: the samples, and the end-of-run check of every session.
public struct ReplayOutcome: Sendable {
    public var recorder: LatencyRecorder
    public var requestsReplayed: Int
    public var sessionsReplayed: Int
    public var roamingRequests: Int
    public var toolCallRequests: Int
    public var wallSeconds: Double
    /// Sessions whose turn count at the home matched what the replay appended.
    public var sessionsVerified: Int
    /// Sessions whose turn count did not match, or could not be read.
    public var sessionsMismatched: Int
    /// Acknowledged turns missing at the session's home after the replay:
    /// writes a crashed home acknowledged but had not yet replicated.
    public var lostAcknowledgedTurns: Int = 0
    /// The failure injected, with its timings, if any.
    public var failover: FailoverOutcome?
    /// Quotas, billing and router weights, when the replay used them.
    public var crossSession: CrossSessionOutcome?
}

/// The effects of the injected region failure.
public struct FailoverOutcome: Sendable {
    public var region: String
    /// Seconds from the replay's start.
    public var downAtSeconds: Double
    public var upAtSeconds: Double
    /// Seconds from the crash to the first response carrying a re-homed session's new token.
    public var firstRehomedResponseSeconds: Double?
    public var sessionsRehomed: Int
    public var responsesWithReplicationGap: Int
    /// True when the failed region kept a session log, so it came back with
    /// every acknowledged write and reconciled them forward.
    public var durable = false
    /// Entries the neighbour had not acknowledged when the region crashed:
    /// the most a crash without a data directory may lose.
    public var recoveryPointEntries = 0
    /// The outcome of the returning region's reconcile-forward, if it ran.
    public var reconcile: ReconcileReport?
}

/// Replays a conversation trace through the HTTP API.
///
/// Each session runs as one task. Its first request creates the session at
/// an entry region chosen by a seeded hash, which homes it there. Every
/// request then reads the buffer tail, appends the user turn (sized by the
/// prompt tokens not yet in the session), records the prompt's KV-cache
/// blocks, optionally walks a tool call through the ledger, and appends the
/// assistant turn. A seeded share of follow-ups enters at another region, as
/// roaming clients do, and is forwarded to the home. Requests of one session
/// never overlap; each starts at its compressed trace time or when the
/// previous one ends, whichever is later.
public final class TraceReplay: Sendable {
    let trace: ConversationTrace
    private let sessions: RebuiltSessions
    let regions: [String]
    let baseURLs: [String: String]
    let configuration: ReplayConfiguration
    let client: HomeportClient
    /// Crashes and restarts regions for `configuration.failure`.
    private let faultInjector: (@Sendable (FaultAction) async -> Void)?
    /// Regions the injector has taken down; clients enter elsewhere meanwhile.
    private let downRegions = Mutex<Set<String>>([])
    /// When `run()` started, for timing re-homes against the failure.
    private let replayStart = Mutex<ContinuousClock.Instant>(.now)
    private let filler: String
    /// Start time of each request in trace milliseconds, after spreading.
    private let startOffsets: [Double]

    public init(
        trace: ConversationTrace, sessions: RebuiltSessions, regions: [String], baseURLs: [String: String],
        configuration: ReplayConfiguration, client: HomeportClient = HomeportClient(),
        faultInjector: (@Sendable (FaultAction) async -> Void)? = nil
    ) {
        self.faultInjector = faultInjector
        self.trace = trace
        self.sessions = sessions
        self.regions = regions
        self.baseURLs = baseURLs
        self.configuration = configuration
        self.client = client
        let largestTurn = (trace.requests.map { max($0.inputTokens, $0.outputTokens) }.max() ?? 0) * configuration.bytesPerToken
        self.filler = Self.makeFiller(byteCount: largestTurn)
        self.startOffsets = Self.startOffsets(of: trace, spread: configuration.spreadSharedTimestamps)
    }

    /// Computes each request's start in trace milliseconds. With `spread`, the k-th of
    /// n requests sharing timestamp t starts at t + k × (t' − t) / n, where t'
    /// is the next distinct timestamp (the last group spreads over 1 s).
    static func startOffsets(of trace: ConversationTrace, spread: Bool) -> [Double] {
        let requests = trace.requests
        guard spread else { return requests.map { Double($0.timestampMilliseconds) } }

        var offsets: [Double] = []
        offsets.reserveCapacity(requests.count)
        var groupStart = 0
        while groupStart < requests.count {
            let timestamp = requests[groupStart].timestampMilliseconds
            var groupEnd = groupStart
            while groupEnd < requests.count, requests[groupEnd].timestampMilliseconds == timestamp { groupEnd += 1 }
            let next = groupEnd < requests.count ? requests[groupEnd].timestampMilliseconds : timestamp + 1000
            let step = Double(next - timestamp) / Double(groupEnd - groupStart)
            for position in 0..<(groupEnd - groupStart) {
                offsets.append(Double(timestamp) + step * Double(position))
            }
            groupStart = groupEnd
        }
        return offsets
    }

    /// Returns the region where a session's first request enters.
    public func entryRegion(ofSession sessionID: Int) -> String {
        var generator = SplitMix64(seed: configuration.seed ^ (UInt64(sessionID) &* 0x9E37_79B9_7F4A_7C15))
        return regions[Int(generator.next() % UInt64(regions.count))]
    }

    public func run() async -> ReplayOutcome {
        let recorder = LatencyRecorder()
        let started = ContinuousClock.now
        replayStart.withLock { $0 = started }
        if configuration.crossSessionState { await prepareCrossSessionState(recorder: recorder) }
        let injection = Task { await self.injectFailure(startedAt: started) }
        let weightChange = Task { await self.changeRouterWeights(startedAt: started) }
        let counters = await withTaskGroup(of: SessionCounters.self) { group in
            for session in sessions.sessions {
                group.addTask { await self.replaySession(session, startedAt: started, recorder: recorder) }
            }
            var total = SessionCounters()
            for await counters in group { total.add(counters) }
            return total
        }
        let failureTimes = await injection.value
        let convergence = await weightChange.value
        let wallSeconds = (ContinuousClock.now - started).secondsValue
        let check = await verifySessions(counters.handles, recorder: recorder)

        var outcome = ReplayOutcome(
            recorder: recorder, requestsReplayed: counters.requests, sessionsReplayed: sessions.sessions.count,
            roamingRequests: counters.roaming, toolCallRequests: counters.toolCalls, wallSeconds: wallSeconds,
            sessionsVerified: check.verified, sessionsMismatched: check.mismatched)
        outcome.lostAcknowledgedTurns = check.lostTurns
        if configuration.crossSessionState {
            outcome.crossSession = await crossSessionOutcome(counters.crossSession, convergence: convergence)
        }
        if let failure = configuration.failure, let times = failureTimes {
            outcome.failover = FailoverOutcome(
                region: failure.region, downAtSeconds: times.down, upAtSeconds: times.up,
                firstRehomedResponseSeconds: recorder.firstRehomeSeconds.map { $0 - times.down },
                sessionsRehomed: counters.rehomed, responsesWithReplicationGap: recorder.replicationGapResponses)
        }
        return outcome
    }

    /// Crashes the configured region at its share of the replay and restarts
    /// it later, recording both times in seconds from the start.
    private func injectFailure(startedAt: ContinuousClock.Instant) async -> (down: Double, up: Double)? {
        guard let failure = configuration.failure, let faultInjector else { return nil }
        let span = Double(trace.durationMilliseconds) / configuration.timeCompression
        try? await Task.sleep(until: startedAt + .milliseconds(span * failure.downAt), clock: .continuous)
        downRegions.withLock { _ = $0.insert(failure.region) }
        await faultInjector(.crash(failure.region))
        let down = (ContinuousClock.now - startedAt).secondsValue

        try? await Task.sleep(until: startedAt + .milliseconds(span * failure.upAt), clock: .continuous)
        await faultInjector(.restart(failure.region))
        downRegions.withLock { _ = $0.remove(failure.region) }
        let up = (ContinuousClock.now - startedAt).secondsValue
        return (down, up)
    }

    /// Returns `region`, or the next region of the ring while it is down, as a
    /// client that fails over to another endpoint would.
    private func reachableEntry(_ region: String) -> String {
        let down = downRegions.withLock { $0 }
        guard down.contains(region), let index = regions.firstIndex(of: region) else { return region }
        return (1..<regions.count).map { regions[(index + $0) % regions.count] }.first { !down.contains($0) } ?? region
    }

    struct SessionCounters: Sendable {
        var requests = 0
        var roaming = 0
        var toolCalls = 0
        var rehomed = 0
        /// Each replayed session's handle and the turns it should hold.
        var handles: [(SessionHandle, Int)] = []
        var crossSession = CrossSessionCounters()

        mutating func add(_ other: SessionCounters) {
            crossSession.add(other.crossSession)
            requests += other.requests
            rehomed += other.rehomed
            roaming += other.roaming
            toolCalls += other.toolCalls
            handles += other.handles
        }
    }

    private func replaySession(_ session: TraceSession, startedAt: ContinuousClock.Instant, recorder: LatencyRecorder) async
        -> SessionCounters
    {
        var counters = SessionCounters()
        let home = entryRegion(ofSession: session.id)
        let holder = SessionHolder(firstEntry: home)
        var tokensInSession = 0
        var turnsAppended = 0

        for (position, requestIndex) in session.requestIndices.enumerated() {
            let request = trace.requests[requestIndex]
            let due = startedAt + .milliseconds(startOffsets[requestIndex] / configuration.timeCompression)
            try? await Task.sleep(until: due, clock: .continuous)

            var generator = SplitMix64(seed: configuration.seed &+ UInt64(requestIndex) &* 0xD1B5_4A32_D192_ED03)
            var entry = home
            if position > 0, Double.random(in: 0..<1, using: &generator) < configuration.roamingShare {
                let others = regions.filter { $0 != home }
                entry = others[Int(generator.next() % UInt64(others.count))]
                counters.roaming += 1
            }
            let withToolCall = Double.random(in: 0..<1, using: &generator) < configuration.toolCallShare
            entry = reachableEntry(entry)
            let baseURL = baseURLs[entry]!

            // The first request creates the session, which homes it at its entry region.
            if holder.handle == nil {
                guard
                    let created = await call(
                        "create_session", entry: entry, recorder: recorder, holder: holder,
                        {
                            let (handle, response) = try await self.client.createSession(at: baseURL, tenant: self.configuration.tenant)
                            return (response, handle)
                        })
                else { return counters }
                holder.handle = created
            }
            guard holder.handle != nil else { return counters }

            var reservation: CrossSessionReservation?
            if configuration.crossSessionState {
                reservation = await beforeRequest(
                    requestIndex, tokens: request.inputTokens + request.outputTokens, entry: entry, recorder: recorder, holder: holder,
                    counters: &counters.crossSession)
            }

            let allowStale = entry != home && configuration.staleReadsWhenRoaming
            _ = await call("read_tail", entry: entry, recorder: recorder, holder: holder) {
                let response = try await self.client.readTurns(
                    at: baseURL, holder.handle!, tail: self.configuration.tailTurns, allowStale: allowStale)
                if response.servedFromStandby { recorder.recordStandbyStaleness(response.body["standby"]) }
                return (response, ())
            }

            let userTokens = max(0, request.inputTokens - tokensInSession)
            if await call(
                "append_user_turn", entry: entry, recorder: recorder, holder: holder,
                {
                    (
                        try await self.client.appendTurn(
                            at: baseURL, holder.handle!, role: "user", content: self.content(tokens: userTokens), tokens: userTokens,
                            idempotencyKey: "r\(requestIndex)-user"), ()
                    )
                }) != nil
            {
                turnsAppended += 1
            }

            let refs = request.blockHashes.map { (block: Int64($0), location: "\(entry)/prefill-\($0 % 8)") }
            _ = await call("put_kv_refs", entry: entry, recorder: recorder, holder: holder) {
                (try await self.client.putKVCacheRefs(at: baseURL, holder.handle!, refs: refs), ())
            }

            if withToolCall {
                counters.toolCalls += 1
                let callID = "call-\(requestIndex)"
                for status in ["requested", "running", "succeeded"] {
                    _ = await call("ledger_write", entry: entry, recorder: recorder, holder: holder) {
                        (
                            try await self.client.writeLedgerEntry(
                                at: baseURL, holder.handle!, callID: callID, status: status,
                                name: status == "requested" ? "web_search" : nil,
                                arguments: status == "requested" ? .object(["query": .string("trace request \(requestIndex)")]) : nil,
                                result: status == "succeeded" ? .object(["hits": .integer(Int64(requestIndex % 10))]) : nil), ()
                        )
                    }
                }
            }

            if await call(
                "append_assistant_turn", entry: entry, recorder: recorder, holder: holder,
                {
                    (
                        try await self.client.appendTurn(
                            at: baseURL, holder.handle!, role: "assistant", content: self.content(tokens: request.outputTokens),
                            tokens: request.outputTokens, idempotencyKey: "r\(requestIndex)-assistant"), ()
                    )
                }) != nil
            {
                turnsAppended += 1
            }

            if let reservation {
                await afterRequest(
                    reservation, used: userTokens + request.outputTokens, entry: entry, recorder: recorder, holder: holder,
                    counters: &counters.crossSession)
            }

            tokensInSession += userTokens + request.outputTokens
            counters.requests += 1
        }

        if let handle = holder.handle { counters.handles.append((handle, turnsAppended)) }
        counters.rehomed += holder.rehomed ? 1 : 0
        return counters
    }

    /// Runs one API call with retries, records its latency (of the attempt
    /// that succeeded) or its error, and returns its value.
    func call<Value>(
        _ operation: String, entry: String, recorder: LatencyRecorder, holder: SessionHolder,
        _ body: () async throws -> (ClientResponse, Value)
    ) async -> Value? {
        var attempt = 1
        var backoff = Duration.milliseconds(50)
        while true {
            let started = ContinuousClock.now
            do {
                let (response, value) = try await body()
                let milliseconds = (ContinuousClock.now - started).secondsValue * 1000
                recorder.record(
                    operation, entry: entry, servedBy: response.servedBy ?? entry, fromStandby: response.servedFromStandby,
                    homeEntry: entry == holder.firstEntry, milliseconds: milliseconds)

                // A response that re-homed the session carries its new token.
                if let token = response.routeToken, var handle = holder.handle, token != handle.token {
                    handle.token = token
                    handle.home = response.servedBy ?? handle.home
                    holder.handle = handle
                    holder.rehomed = true
                    recorder.recordRehome(atSeconds: (ContinuousClock.now - replayStart.withLock { $0 }).secondsValue)
                }
                if response.replicationGap || response.body["replicationGap"]?.boolValue == true {
                    recorder.recordReplicationGap()
                }
                return value
            } catch {
                let clientError = error as? HomeportClientError ?? .invalidResponse("\(error)")
                // While a region fails, retries wait for fencing and takeover
                // (a few lease TTLs); otherwise a few quick attempts suffice.
                let attempts = configuration.failure == nil ? configuration.maximumAttempts : 40
                if clientError.isRetryable, attempt < attempts {
                    attempt += 1
                    recorder.recordRetry()
                    if configuration.failure != nil {
                        try? await Task.sleep(for: backoff)
                        backoff = min(backoff * 2, .seconds(1))
                    }
                    continue
                }
                recorder.recordError(operation, message: clientError.description)
                return nil
            }
        }
    }

    /// Reads every session at its home and compares its turn count with what
    /// was acknowledged. Fewer turns after a failover are acknowledged writes
    /// the crashed home had not replicated, so they count in `lostTurns`, not
    /// as mismatches. Any other difference is a mismatch.
    private func verifySessions(
        _ handles: [(SessionHandle, Int)], recorder: LatencyRecorder
    ) async -> (verified: Int, mismatched: Int, lostTurns: Int) {
        let chunkSize = max(1, (handles.count + 15) / 16)
        let failoverRan = configuration.failure != nil
        return await withTaskGroup(of: (Int, Int, Int).self) { group in
            for chunk in stride(from: 0, to: handles.count, by: chunkSize) {
                let slice = Array(handles[chunk..<min(chunk + chunkSize, handles.count)])
                group.addTask {
                    var verified = 0
                    var mismatched = 0
                    var lost = 0
                    for (handle, expectedTurns) in slice {
                        do {
                            let response = try await self.client.describeSession(at: self.baseURLs[handle.home]!, handle)
                            let turns = Int(response.body["turnCount"]?.integerValue ?? -1)
                            if turns == expectedTurns {
                                verified += 1
                            } else if failoverRan, turns >= 0, turns < expectedTurns {
                                lost += expectedTurns - turns
                            } else {
                                mismatched += 1
                                recorder.recordError(
                                    "verify", message: "session \(handle.id) has \(turns) turns at its home, expected \(expectedTurns)")
                            }
                        } catch {
                            mismatched += 1
                            recorder.recordError("verify", message: "session \(handle.id): \(error)")
                        }
                    }
                    return (verified, mismatched, lost)
                }
            }
            var total = (0, 0, 0)
            for await (verified, mismatched, lost) in group {
                total.0 += verified
                total.1 += mismatched
                total.2 += lost
            }
            return total
        }
    }

    private func content(tokens: Int) -> String {
        String(filler.utf8.prefix(tokens * configuration.bytesPerToken))!
    }

    /// Readable ASCII text of at least `byteCount` bytes, cut to length per turn.
    private static func makeFiller(byteCount: Int) -> String {
        let sentence = "The replayed turn carries generated text of the size the trace records. "
        let repeats = byteCount / sentence.utf8.count + 1
        return String(repeating: sentence, count: repeats)
    }
}
