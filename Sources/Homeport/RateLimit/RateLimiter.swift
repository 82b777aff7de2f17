import Synchronization

/// Eventually-global rate limits: requests per tenant per fixed window,
/// admitted by a region's local view of the sum over all regions.
///
/// Each region counts its own admissions in `RegionRateLimitCounters` (one
/// counter per region, shared by its nodes) and exchanges its counts with
/// every peer every `countExchangeInterval`, as grow-only counters. A
/// request is admitted while the region's view of the window's sum is
/// below the limit.
///
/// Bound: when region R admits a request, the requests admitted in the
/// window across all regions are at most the limit plus what the other
/// regions counted that R has not received yet. That is what they counted
/// since their last count exchange that reached R. The bound depends on the exchange interval, the
/// delay between regions and the request rate, not on the number of
/// nodes per region, because the nodes of a region share its counter.
///
/// A tenant's setting is the global register `rate-limit:<tenant>`, so it is
/// written at any region and reaches the others by push and anti-entropy.
/// A tenant without a setting is admitted without counting.
///
/// NOTE: windows are aligned to each region's wall clock, so regions whose
/// clocks differ disagree about the current window for that long around
/// each boundary, and a tenant whose window length changes may get up to
/// two limits' worth in the window of the change.
public final class RateLimiter: Sendable {
    public static let countsPath = "/internal/v1/rate-limits/counts"

    public struct Configuration: Sendable, Equatable {
        /// Time between the starts of two count exchanges with every peer.
        /// Shorter means less over-admission and more messages. Default 250 ms.
        public var countExchangeInterval: Duration

        public init(countExchangeInterval: Duration = .milliseconds(250)) {
            self.countExchangeInterval = countExchangeInterval
        }

        public func validate() throws(ConfigurationError) {
            guard countExchangeInterval >= .milliseconds(10), countExchangeInterval <= .seconds(60) else {
                throw ConfigurationError(
                    field: "countExchangeInterval", detail: "must be from 10 ms to 60 s, got \(countExchangeInterval)")
            }
        }
    }

    /// The result of one check.
    public struct Decision: Sendable, Equatable {
        public var tenant: TenantID
        public var admitted: Bool
        /// Nil when the tenant has no setting, which admits every request.
        public var setting: RateLimitSetting?
        public var window: RateLimitWindow?
        /// The window's sum over all regions in this region's view, this
        /// request included when admitted. Nil without a setting.
        public var count: Int64?
        /// Whole seconds until the window ends, at least 1; nil when admitted.
        public var retryAfterSeconds: Int64?
    }

    public let counters: RegionRateLimitCounters
    public let registers: GlobalRegisterStore
    public let configuration: Configuration
    private let transport: any InterRegionTransport
    private let keyRing: TokenKeyRing
    private let clock: any WallClock
    private let metrics: MetricsRegistry
    private let logger: Logger
    /// Stamps of settings found invalid, so each is logged once.
    private let reportedInvalidSettings = Mutex<Set<RegisterStamp>>([])
    /// Failed exchanges in a row, per peer, to log a run of failures once.
    private let failuresInRow = Mutex<[String: Int]>([:])
    private let loop = Mutex<Task<Void, Never>?>(nil)

    public init(
        counters: RegionRateLimitCounters, registers: GlobalRegisterStore, configuration: Configuration = Configuration(),
        transport: any InterRegionTransport, keyRing: TokenKeyRing, clock: any WallClock, metrics: MetricsRegistry, logger: Logger
    ) throws(ConfigurationError) {
        try configuration.validate()
        guard counters.region == registers.region else {
            throw ConfigurationError(
                field: "counters", detail: "the counters are of region \(counters.region), the registers of \(registers.region)")
        }
        self.counters = counters
        self.registers = registers
        self.configuration = configuration
        self.transport = transport
        self.keyRing = keyRing
        self.clock = clock
        self.metrics = metrics
        self.logger = logger.with(["region": registers.region])
    }

    public var region: String { registers.region }

    // MARK: Settings

    /// Returns the tenant's setting in this region's view, or nil when none
    /// is set or the stored one is invalid (logged once).
    public func setting(for tenant: TenantID) -> RateLimitSetting? {
        guard let entry = registers.entry(RateLimitSetting.registerName(for: tenant)) else { return nil }
        do {
            return try RateLimitSetting(reading: JSONObjectReader(entry.value))
        } catch {
            let firstReport = reportedInvalidSettings.withLock { $0.insert(entry.stamp).inserted }
            if firstReport {
                logger.warning(
                    "invalid rate-limit setting ignored; the tenant is not limited",
                    ["tenant": tenant.rawValue, "stamp": "\(entry.stamp)", "error": "\(error)"])
            }
            return nil
        }
    }

    /// Writes the tenant's setting at this region; it reaches the others
    /// like any global register.
    /// - Throws: `GlobalStateError.registerLimitReached` when the region has
    ///   no room for a new register.
    @discardableResult
    public func setSetting(_ setting: RateLimitSetting, for tenant: TenantID) throws(GlobalStateError) -> GlobalRegisterEntry {
        try registers.write(RateLimitSetting.registerName(for: tenant), value: setting.json)
    }

    // MARK: Admission

    /// Admits or rejects one request of `tenant`, counting it when admitted.
    /// Never waits for another region.
    public func check(_ tenant: TenantID) -> Decision {
        guard let setting = setting(for: tenant) else {
            count("unlimited")
            return Decision(tenant: tenant, admitted: true, setting: nil, window: nil, count: nil, retryAfterSeconds: nil)
        }

        let now = clock.nowMilliseconds()
        let window = RateLimitWindow.containing(now, tenant: tenant, windowSeconds: setting.windowSeconds)
        let admission = counters.admit(window, limit: setting.requestsPerWindow)
        count(admission.admitted ? "admitted" : "rejected")

        var retryAfter: Int64?
        if !admission.admitted {
            retryAfter = max(1, (window.endMilliseconds - now + 999) / 1000)
        }
        return Decision(
            tenant: tenant, admitted: admission.admitted, setting: setting, window: window, count: admission.total,
            retryAfterSeconds: retryAfter)
    }

    private func count(_ outcome: String) {
        metrics.increment(
            "homeport_rate_limit_decisions_total", help: "Rate-limit checks, by outcome (admitted, rejected, unlimited).",
            labels: ["region": region, "outcome": outcome])
    }

    // MARK: Count exchange

    /// Sends `peer` the counts of every live window and merges the counts it
    /// replies with. Removes ended windows first. Returns false when the
    /// exchange failed; the next one carries the same counts, and more.
    @discardableResult
    public func exchangeCounts(with peer: String) async -> Bool {
        let now = clock.nowMilliseconds()
        counters.removeEndedWindows(nowMilliseconds: now)
        let message = RateLimitCountsMessage(windows: counters.liveCounts(nowMilliseconds: now))

        do {
            let body = message.json.serializedBytes()
            let request = HTTPRequest(method: "POST", path: Self.countsPath, headers: ["content-type": "application/json"], body: body)
            let headers = [(PeerSignature.header, PeerSignature.sign(body, with: keyRing)), (RegionNode.forwardedFromHeader, region)]
            let response = try await transport.send(request, from: region, to: peer, extraHeaders: headers)
            guard response.status == 200 else {
                throw CountExchangeFailure(
                    detail: "\(peer) answered \(response.status): \(String(decoding: response.body.prefix(300), as: UTF8.self))")
            }
            let reply: RateLimitCountsMessage
            do {
                reply = try RateLimitCountsMessage(jsonBytes: response.body, maximumWindows: counters.maximumWindows)
            } catch {
                throw CountExchangeFailure(detail: "the counts reply is invalid: \(error)")
            }
            merge(reply, from: peer)
            succeeded(peer)
            return true
        } catch {
            failed(peer, error)
            return false
        }
    }

    /// Exchanges counts with every peer at once.
    public func exchangeCountsWithAllPeers() async {
        await withTaskGroup(of: Void.self) { group in
            for peer in registers.peers {
                group.addTask { await self.exchangeCounts(with: peer) }
            }
        }
    }

    /// Merges the counts a peer sent and returns this region's live counts
    /// for the reply.
    func receiveCounts(_ message: RateLimitCountsMessage, from peer: String) -> RateLimitCountsMessage {
        merge(message, from: peer)
        return RateLimitCountsMessage(windows: counters.liveCounts(nowMilliseconds: clock.nowMilliseconds()))
    }

    private func merge(_ message: RateLimitCountsMessage, from peer: String) {
        let (_, dropped) = counters.merge(message.windows, nowMilliseconds: clock.nowMilliseconds())
        metrics.setGauge(
            "homeport_rate_limit_windows", help: "Live rate-limit windows this region counts.", labels: ["region": region],
            to: Double(counters.windowCount))
        if dropped > 0 {
            metrics.increment(
                "homeport_rate_limit_windows_dropped_total", help: "Received rate-limit windows dropped because the counters were full.",
                labels: ["region": region], by: Double(dropped))
            logger.warning(
                "rate-limit windows dropped: the counters are full",
                ["from": peer, "dropped": "\(dropped)", "maximumWindows": "\(counters.maximumWindows)"])
        }
    }

    // MARK: Loop

    /// Starts exchanging counts with every peer every `countExchangeInterval`.
    public func start() {
        loop.withLock { task in
            guard task == nil else { return }
            task = Task { await self.run() }
        }
        logger.info(
            "rate-limit count exchange started",
            ["countExchangeIntervalMilliseconds": "\(configuration.countExchangeInterval.wholeMilliseconds)"])
    }

    /// Stops the loop and waits for it; an exchange in flight finishes or fails first.
    public func stop() async {
        let task = loop.withLock { task in
            defer { task = nil }
            return task
        }
        task?.cancel()
        await task?.value
        logger.info("rate-limit count exchange stopped")
    }

    private func run() async {
        while !Task.isCancelled {
            let started = clock.nowMilliseconds()
            await exchangeCountsWithAllPeers()
            let wait = started + configuration.countExchangeInterval.wholeMilliseconds - clock.nowMilliseconds()
            do {
                try await clock.sleep(for: .milliseconds(max(1, wait)))
            } catch {
                return
            }
        }
    }

    private func succeeded(_ peer: String) {
        let previousFailures = failuresInRow.withLock { $0.removeValue(forKey: peer) ?? 0 }
        if previousFailures > 0 {
            logger.info("rate-limit count exchange recovered", ["peer": peer, "failedInRow": "\(previousFailures)"])
        }
        metrics.increment(
            "homeport_rate_limit_exchanges_total", help: "Rate-limit count exchanges sent, by outcome.",
            labels: ["region": region, "peer": peer, "outcome": "ok"])
    }

    private func failed(_ peer: String, _ error: any Error) {
        let failures = failuresInRow.withLock { failures in
            failures[peer, default: 0] += 1
            return failures[peer]!
        }
        metrics.increment(
            "homeport_rate_limit_exchanges_total", help: "Rate-limit count exchanges sent, by outcome.",
            labels: ["region": region, "peer": peer, "outcome": "failed"])
        // Log the first failure of a run, then every hundredth.
        if failures % 100 == 1 {
            logger.warning(
                "rate-limit count exchange failed; the next one retries",
                ["peer": peer, "failedInRow": "\(failures)", "error": "\(error)"])
        }
    }
}

private struct CountExchangeFailure: Error, CustomStringConvertible {
    let detail: String
    var description: String { detail }
}
