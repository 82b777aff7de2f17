import Synchronization

/// Usage quotas with lease chunks, in one region: the shell that performs
/// `TenantQuota`'s store round trips.
///
/// Each tenant's quota record (`QuotaRecord`) lives in the linearizable
/// store. This region takes a lease chunk of the tenant's remaining budget
/// with one compare-and-swap on that record and grants reservations from it
/// in memory. It takes the next chunk in the background when the chunk runs
/// low, so a reservation the chunk can cover never waits on the store. Commits and
/// releases are local too. The region reports usage and returns a surplus
/// with its next write, at the latest every `settleInterval`.
///
/// Invariant of the record, checked before every write: consumed +
/// outstanding chunks ≤ limit. A region never grants more than its chunk's
/// size in the record, so no tenant is overspent while every region keeps
/// its chunk accounting.
///
/// Failure handling:
/// - A chunk is tied to this region's quota lease (`QuotaLeaseHolder`). The
///   region grants from it only while it holds that lease, with the
///   lease's safety margin. Once the store expires the lease, any other
///   region's settle reclaims the chunk: the store cannot tell how much of
///   it was granted, so the whole chunk is charged as consumed for the
///   period. When the region comes back it credits the tokens it never
///   granted with its next write. A region that never comes back leaves the
///   chunk charged until the period ends.
/// - When the store cannot be reached and the chunk cannot cover a request,
///   the tenant's fail mode decides: deny (closed, the default) or admit up
///   to `failOpenBound` tokens per period in this region (open). Fail-open
///   usage is reported later and shown in the audit. The part of it beyond
///   the limit is counted as `failOpenOverLimit` rather than consumed, so the
///   invariant still holds.
/// - A store write whose outcome is unknown stays pending: the tokens it
///   returns stay out of use until a fresh read shows whether it applied.
///
/// Request ids are scoped to the tenant and to this region: commit and
/// release must reach the region that granted the reservation.
public final class QuotaService: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// How long a reservation is held before it expires and its tokens
        /// return. 60 s by default.
        public var reservationTTL: Duration = .seconds(60)
        /// How long a settled or denied reservation's outcome is kept for
        /// repeated calls. 10 minutes by default.
        public var outcomeRetention: Duration = .seconds(600)
        public var sizing = ChunkSizing()
        /// The quota lease's TTL, renew interval and safety margin.
        public var lease = RegionLease.Configuration()
        /// The maximum time a region keeps usage unreported or leaves other
        /// regions' expired chunks unreclaimed. 1 s by default.
        public var settleInterval: Duration = .seconds(1)
        /// Compare-and-swap attempts per write before the request that
        /// needs it is decided as if the store were unavailable. Attempts
        /// after a conflict wait a random backoff first. 16 by default.
        public var maximumWriteAttempts = 16

        public init() {}

        public func validate() throws(ConfigurationError) {
            guard reservationTTL >= .milliseconds(1) else {
                throw ConfigurationError(
                    field: "quota.reservationTTL", detail: "the reservation TTL must be at least 1 ms, got \(reservationTTL)")
            }
            guard outcomeRetention >= .zero else {
                throw ConfigurationError(
                    field: "quota.outcomeRetention", detail: "the outcome retention must not be negative, got \(outcomeRetention)")
            }
            guard settleInterval >= .milliseconds(1) else {
                throw ConfigurationError(
                    field: "quota.settleInterval", detail: "the settle interval must be at least 1 ms, got \(settleInterval)")
            }
            guard maximumWriteAttempts >= 1 else {
                throw ConfigurationError(
                    field: "quota.maximumWriteAttempts", detail: "at least one write attempt is needed, got \(maximumWriteAttempts)")
            }
            try sizing.validate()
            try lease.validate()
        }
    }

    /// The service's mutable state, behind one mutex: every tenant's quota,
    /// the calls waiting for another call of the same request id, the
    /// per-tenant store gates, and the time of each tenant's last settle.
    struct State: ~Copyable {
        var tenants: [TenantID: TenantQuota] = [:]
        var waiters: [TenantID: [ReservationID: [CheckedContinuation<Result<ReserveResult, QuotaError>, Never>]]] = [:]
        var gates: [TenantID: StoreGate] = [:]
        var lastSettled: [TenantID: Int64] = [:]
    }

    public let region: String
    let store: any LinearizableStore
    let clock: any WallClock
    let logger: Logger
    let metrics: MetricsRegistry
    let configuration: Configuration
    let leaseHolder: QuotaLeaseHolder
    let state = Mutex(State())
    private let loop = Mutex<Task<Void, Never>?>(nil)

    public init(
        region: String, store: any LinearizableStore, clock: any WallClock, configuration: Configuration = Configuration(),
        metrics: MetricsRegistry = MetricsRegistry(), logger: Logger
    ) throws(ConfigurationError) {
        try configuration.validate()
        guard !region.isEmpty, !region.contains("/") else {
            throw ConfigurationError(
                field: "quota.region", detail: "the region name must be non-empty and contain no '/', got \"\(region)\"")
        }
        self.region = region
        self.store = store
        self.clock = clock
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger.with(["region": region])
        self.leaseHolder = try QuotaLeaseHolder(
            region: region, configuration: configuration.lease, store: store, clock: clock, logger: self.logger)
    }

    // MARK: Reservations

    /// Reserves `amount` tokens for `tenant` under the client's request id.
    ///
    /// Served from the local chunk when it has room; otherwise after one
    /// store round trip for the tenant (shared with the requests waiting
    /// behind it). A denial is an outcome, not an error. A repeat with the
    /// same id and amount returns the stored outcome with `replayed` set.
    ///
    /// Throws `invalidAmount` for an amount outside 1…10^15,
    /// `requestIDReused` for a known id with another amount, and
    /// `quotaNotFound` when the tenant has no policy.
    public func reserve(tenant: TenantID, requestID: ReservationID, amount: Int64) async throws(QuotaError) -> ReserveResult {
        guard (1...QuotaPolicy.maximumTokens).contains(amount) else {
            throw QuotaError(
                .invalidAmount, field: "amount", "amount \(amount) is out of range: reserve from 1 to \(QuotaPolicy.maximumTokens) tokens")
        }

        let now = clock.nowMilliseconds()
        let lease = leaseHolder.validLease()
        let decision = try state.withLock { (state) throws(QuotaError) -> TenantQuota.ReserveDecision in
            try state.tenants[tenant, default: makeTenant(tenant)].reserve(requestID, amount: amount, nowMilliseconds: now, lease: lease)
        }

        switch decision {
        case .decided(let result, let prefetch):
            if !result.replayed { count(result, chunkHit: true) }
            if prefetch { schedulePrefetch(tenant) }
            return result
        case .waitForOutcome:
            return try await waitForOutcome(tenant, requestID).get()
        case .needStore(let arrival):
            let outcome = await reserveThroughStore(tenant, requestID, amount: amount, arrival: arrival)
            if case .success(let result) = outcome { count(result, chunkHit: false) }
            return try outcome.get()
        }
    }

    /// Commits a held reservation with the tokens actually used (0 up to the
    /// amount reserved); the rest return to the quota. Local: no store round trip.
    ///
    /// Throws `invalidAmount` for a negative `used`, `usedExceedsReserved`,
    /// `requestIDReused` when it was committed with another `used`,
    /// `reservationNotHeld` after a release, expiry or denial, and
    /// `reservationNotFound`.
    public func commit(tenant: TenantID, requestID: ReservationID, used: Int64) throws(QuotaError) -> SettleResult {
        guard (0...QuotaPolicy.maximumTokens).contains(used) else {
            throw QuotaError(
                .invalidAmount, field: "used", "used \(used) is out of range: it must be from 0 to \(QuotaPolicy.maximumTokens) tokens")
        }
        let now = clock.nowMilliseconds()
        return try withTenant(tenant, requestID) { (quota) throws(QuotaError) in
            try quota.commit(requestID, used: used, nowMilliseconds: now)
        }
    }

    /// Releases a held reservation, returning all its tokens. Local.
    ///
    /// Throws `reservationNotHeld` after a commit or denial, and
    /// `reservationNotFound`. Releasing an expired reservation returns it as expired.
    public func release(tenant: TenantID, requestID: ReservationID) throws(QuotaError) -> SettleResult {
        let now = clock.nowMilliseconds()
        return try withTenant(tenant, requestID) { (quota) throws(QuotaError) in
            try quota.release(requestID, nowMilliseconds: now)
        }
    }

    /// Returns the reservation as this region stores it. Throws `reservationNotFound`.
    public func reservation(tenant: TenantID, requestID: ReservationID) throws(QuotaError) -> Reservation {
        let now = clock.nowMilliseconds()
        return try withTenant(tenant, requestID) { (quota) throws(QuotaError) in
            try quota.reservation(requestID, nowMilliseconds: now)
        }
    }

    // MARK: Lifecycle

    /// Runs one step: keeps the quota lease, expires reservations, and
    /// settles each tenant whose last settle is `settleInterval` old
    /// (reports usage, reclaims expired chunks of other regions, returns a
    /// surplus). The loop calls it; tests call it directly.
    public func step() async {
        await leaseHolder.step()

        let now = clock.nowMilliseconds()
        let interval = configuration.settleInterval.wholeMilliseconds
        let due = state.withLock { state -> [TenantID] in
            var due: [TenantID] = []
            for tenant in state.tenants.keys.sorted(by: { $0.rawValue < $1.rawValue }) {
                state.tenants[tenant]!.expireDue(nowMilliseconds: now)
                if now - state.lastSettled[tenant, default: Int64.min / 2] >= interval {
                    state.lastSettled[tenant] = now
                    due.append(tenant)
                }
            }
            return due
        }

        for tenant in due {
            await settle(tenant)
        }
    }

    /// Starts the loop that calls `step()` every quarter of the lease's renew interval.
    public func start() {
        let interval = configuration.lease.renewInterval / 4
        loop.withLock { task in
            guard task == nil else { return }
            task = Task {
                while !Task.isCancelled {
                    await self.step()
                    try? await self.clock.sleep(for: interval)
                }
            }
        }
    }

    /// Stops the loop, then reports usage and returns every free token of
    /// every tenant, and revokes the quota lease so other regions reclaim
    /// the rest (held reservations and unreported usage) at once. Call it
    /// once the node no longer sends requests here. A store that cannot be
    /// reached leaves the chunks to be reclaimed when the lease expires.
    public func stop() async {
        let task = loop.withLock { task -> Task<Void, Never>? in
            defer { task = nil }
            return task
        }
        task?.cancel()
        await task?.value

        let tenants = state.withLock { state in Array(state.tenants.keys) }
        for tenant in tenants {
            let gate = self.gate(for: tenant)
            await gate.enter()
            do {
                try await writeRecord(tenant, purpose: .returnAll, reclaim: false)
            } catch {
                logger.warning("quota chunk not returned at stop", ["tenant": tenant.rawValue, "error": "\(error)"])
            }
            gate.leave()
        }
        await leaseHolder.revoke()
    }

    // MARK: Internals

    func makeTenant(_ tenant: TenantID) -> TenantQuota {
        let settings = TenantQuota.Settings(
            reservationTTLMilliseconds: configuration.reservationTTL.wholeMilliseconds,
            outcomeRetentionMilliseconds: configuration.outcomeRetention.wholeMilliseconds,
            sizing: configuration.sizing)
        return TenantQuota(tenant: tenant, region: region, settings: settings)
    }

    func gate(for tenant: TenantID) -> StoreGate {
        state.withLock { state in
            if let gate = state.gates[tenant] { return gate }
            let gate = StoreGate()
            state.gates[tenant] = gate
            return gate
        }
    }

    private func withTenant<Value: Sendable>(
        _ tenant: TenantID, _ requestID: ReservationID, _ body: (inout TenantQuota) throws(QuotaError) -> Value
    ) throws(QuotaError) -> Value {
        try state.withLock { (state) throws(QuotaError) -> Value in
            guard state.tenants[tenant] != nil else {
                throw QuotaError(
                    .reservationNotFound, field: "requestId",
                    "no reservation \(requestID) of tenant \(tenant) in region \(region); commit and release go to the region that granted it"
                )
            }
            return try body(&state.tenants[tenant]!)
        }
    }

    /// Decides a reservation the chunk could not cover: waits for the
    /// tenant's gate, reuses the result of a round trip that started after
    /// this request arrived, or makes its own. Resumes the calls waiting for
    /// the same request id.
    private func reserveThroughStore(
        _ tenant: TenantID, _ requestID: ReservationID, amount: Int64, arrival: UInt64
    ) async -> Result<ReserveResult, QuotaError> {
        let gate = self.gate(for: tenant)
        await gate.enter()
        defer { gate.leave() }

        let waited = state.withLock { state in
            state.tenants[tenant]!.decideAfterWait(
                requestID, amount: amount, arrival: arrival, nowMilliseconds: clock.nowMilliseconds(), lease: leaseHolder.validLease())
        }
        if let waited {
            return finish(tenant, requestID, .success(waited))
        }

        do {
            try await writeRecord(tenant, purpose: .refill(amount: amount), reclaim: false)
            return finish(tenant, requestID) { quota, now, lease in
                .success(quota.finishReserve(requestID, amount: amount, nowMilliseconds: now, lease: lease))
            }
        } catch  where error.code == .quotaNotFound {
            return finish(tenant, requestID) { quota, _, _ in
                quota.abandon(requestID)
                return .failure(error)
            }
        } catch {
            if error.code == .corruptRecord {
                logger.error("quota record unusable", ["tenant": tenant.rawValue, "request": requestID.rawValue, "error": "\(error)"])
            }
            return finish(tenant, requestID) { quota, now, lease in
                .success(quota.finishReserveWithoutStore(requestID, amount: amount, nowMilliseconds: now, lease: lease))
            }
        }
    }

    /// Decides the request under the mutex with `decide` and resumes every
    /// call waiting for the same request id with the result.
    private func finish(
        _ tenant: TenantID, _ requestID: ReservationID,
        _ decide: (inout TenantQuota, Int64, LeaseID?) -> Result<ReserveResult, QuotaError>
    ) -> Result<ReserveResult, QuotaError> {
        let now = clock.nowMilliseconds()
        let lease = leaseHolder.validLease()
        let (result, waiting) = state.withLock { state in
            let result = decide(&state.tenants[tenant]!, now, lease)
            let waiting = state.waiters[tenant]?.removeValue(forKey: requestID) ?? []
            return (result, waiting)
        }

        let replay = result.map { ReserveResult(requestID: $0.requestID, amount: $0.amount, outcome: $0.outcome, replayed: true) }
        for continuation in waiting {
            continuation.resume(returning: replay)
        }
        return result
    }

    private func finish(
        _ tenant: TenantID, _ requestID: ReservationID, _ result: Result<ReserveResult, QuotaError>
    ) -> Result<ReserveResult, QuotaError> {
        finish(tenant, requestID) { _, _, _ in result }
    }

    /// Waits for the call that is deciding the same request id. The check
    /// and the registration happen under the mutex that the deciding call
    /// stores its result under, so the result cannot slip between them.
    private func waitForOutcome(_ tenant: TenantID, _ requestID: ReservationID) async -> Result<ReserveResult, QuotaError> {
        await withCheckedContinuation { (continuation: CheckedContinuation<Result<ReserveResult, QuotaError>, Never>) in
            let decided = state.withLock { state -> Result<ReserveResult, QuotaError>? in
                guard let quota = state.tenants[tenant] else {
                    return .failure(
                        QuotaError(.quotaNotFound, "tenant \(tenant) has no quota policy; set one with PUT /v1/tenants/\(tenant)/quota"))
                }
                if let reservation = quota.reservations[requestID] {
                    return .success(
                        ReserveResult(requestID: requestID, amount: reservation.amount, outcome: reservation.outcome, replayed: true))
                }
                guard quota.pending[requestID] != nil else {
                    // The deciding call failed without storing an outcome.
                    return .failure(
                        QuotaError(.quotaNotFound, "tenant \(tenant) has no quota policy; set one with PUT /v1/tenants/\(tenant)/quota"))
                }
                state.waiters[tenant, default: [:]][requestID, default: []].append(continuation)
                return nil
            }
            if let decided { continuation.resume(returning: decided) }
        }
    }

    /// Refills the tenant's chunk in the background after a local grant left it low.
    private func schedulePrefetch(_ tenant: TenantID) {
        Task {
            let gate = self.gate(for: tenant)
            await gate.enter()
            do {
                try await self.writeRecord(tenant, purpose: .refill(amount: 0), reclaim: false)
            } catch {
                self.logger.debug("quota chunk prefetch failed", ["tenant": tenant.rawValue, "error": "\(error)"])
            }
            self.state.withLock { $0.tenants[tenant]?.prefetchFinished() }
            gate.leave()
        }
    }

    /// Settles one tenant unless a store round trip for it is under way.
    private func settle(_ tenant: TenantID) async {
        let gate = self.gate(for: tenant)
        guard gate.tryEnter() else { return }
        defer { gate.leave() }

        do {
            try await writeRecord(tenant, purpose: .settle, reclaim: true)
        } catch {
            logger.warning("quota settle failed", ["tenant": tenant.rawValue, "error": "\(error)"])
        }
    }

    private func count(_ result: ReserveResult, chunkHit: Bool) {
        let labels: KeyValuePairs<String, String> = ["region": region]
        if chunkHit {
            metrics.increment(
                "homeport_quota_chunk_hits_total", help: "Reservations decided from the local lease chunk without a store round trip.",
                labels: labels)
        } else {
            metrics.increment("homeport_quota_chunk_misses_total", help: "Reservations that needed a store round trip.", labels: labels)
        }

        let outcome: String
        switch result.outcome {
        case .granted(let source, _):
            outcome = "granted"
            if source == .failOpen {
                metrics.increment(
                    "homeport_quota_fail_open_tokens_total", help: "Tokens admitted without the store in fail-open mode.", labels: labels,
                    by: Double(result.amount))
            }
        case .denied(let reason, _):
            outcome = reason.rawValue
        }
        metrics.increment(
            "homeport_quota_reservations_total", help: "Reservations decided, by outcome.", labels: ["region": region, "outcome": outcome])
    }
}
