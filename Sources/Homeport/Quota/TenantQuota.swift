/// One tenant's quota as one region holds it: the last quota record seen,
/// the local lease chunk, the reservations by request id, the recent demand
/// and the counters of the audit.
///
/// A value type that does no I/O. Its shell, `QuotaService`, calls it under
/// a mutex, performs the store round trips it requests, and reports their
/// results (`planWrite` then `applyWrite`, `abortWrite` or
/// `markWriteInDoubt`).
///
/// A reservation is served from the local chunk when the chunk has room and
/// the region holds the lease the chunk is tied to. Otherwise `reserve`
/// returns `needStore`, the shell refills the chunk, and `finishReserve`
/// (after a write) or `finishReserveWithoutStore` (store unreachable)
/// decides. Reservations of one request id are decided once: a repeat with
/// the same amount returns the stored result, one with another amount is
/// rejected.
struct TenantQuota: Sendable {
    /// The settings of the service that owns the tenant.
    struct Settings: Sendable, Equatable {
        var reservationTTLMilliseconds: Int64
        var outcomeRetentionMilliseconds: Int64
        var sizing: ChunkSizing
    }

    /// The decision of `reserve` for the shell.
    enum ReserveDecision: Sendable, Equatable {
        /// Decided without the store. `prefetch` requests a background refill
        /// of the chunk because it runs low.
        case decided(ReserveResult, prefetch: Bool)
        /// The same request id is being decided by another call; wait for it.
        case waitForOutcome
        /// The store must be consulted. `arrival` orders the request against
        /// store round trips, so a round trip that started later can decide it too.
        case needStore(arrival: UInt64)
    }

    /// The result of a store round trip, which requests waiting behind it may reuse.
    enum StoreAnswer: Sendable, Equatable {
        /// The write succeeded or was not needed, and this much budget was free afterwards.
        case budget(free: Int64)
        /// The store could not be reached.
        case unreachable
    }

    /// The reason for a write of the record.
    enum WritePurpose: Sendable, Equatable {
        /// Take budget so the chunk covers a request of `amount` tokens, or
        /// tops up to the target chunk when `amount` is 0.
        case refill(amount: Int64)
        /// Report usage, return a surplus beyond twice the target chunk, and
        /// top up to the target.
        case settle
        /// Report usage and return every free token, because the region stops.
        case returnAll
    }

    /// The outcome of planning a write.
    enum WritePlan: Sendable, Equatable {
        case write(ChunkWrite)
        /// Nothing would change in the record. `free` is its free budget.
        case unchanged(free: Int64)
    }

    let tenant: TenantID
    let region: String
    let settings: Settings

    /// The last record read or written, nil before the first store round trip.
    private(set) var record: QuotaRecord?
    /// The modRevision of `record`.
    private(set) var recordRevision: Int64 = 0
    private(set) var chunk: LocalChunk?
    private(set) var reservations: [ReservationID: Reservation] = [:]
    /// Request ids being decided by a store round trip, with their amounts.
    private(set) var pending: [ReservationID: Int64] = [:]
    private var expiries = DeadlineQueue()
    private var retention = DeadlineQueue()
    private var demand: DemandWindow
    /// The write in flight, or in doubt when `writeInDoubt`.
    private(set) var write: ChunkWrite?
    private(set) var writeInDoubt = false
    /// Tokens admitted in fail-open mode, by period, against the bound.
    private var failOpenAdmitted: [Int64: Int64] = [:]
    /// Usage of committed fail-open reservations not yet reported, by period.
    private var failOpenUnreported: [Int64: Int64] = [:]
    /// Requests that reached the store path so far.
    private var arrivals: UInt64 = 0
    private(set) var lastStoreAnswer: (arrival: UInt64, answer: StoreAnswer)?
    /// True while a background refill is scheduled or running.
    private(set) var prefetchScheduled = false
    private(set) var counters = QuotaCounters()

    init(tenant: TenantID, region: String, settings: Settings) {
        self.tenant = tenant
        self.region = region
        self.settings = settings
        self.demand = DemandWindow(seconds: settings.sizing.demandWindowSeconds)
    }

    // MARK: Reservations

    /// Decides a reservation locally when it can: a repeat of a known request
    /// id, an amount over the limit, or room in a chunk tied to `lease` (the
    /// region's valid quota lease, nil when it holds none).
    mutating func reserve(
        _ id: ReservationID, amount: Int64, nowMilliseconds now: Int64, lease: LeaseID?
    ) throws(QuotaError) -> ReserveDecision {
        expireDue(nowMilliseconds: now)

        if let existing = reservations[id] {
            return .decided(try replay(existing, amount: amount), prefetch: false)
        }
        if let pendingAmount = pending[id] {
            guard pendingAmount == amount else { throw reused(id, firstAmount: pendingAmount, amount: amount) }
            return .waitForOutcome
        }

        arrivals += 1
        demand.record(tokens: amount, atMilliseconds: now)
        guard let record else {
            pending[id] = amount
            return .needStore(arrival: arrivals)
        }

        guard amount <= record.policy.limit else {
            let result = deny(id, amount: amount, .amountExceedsLimit, nowMilliseconds: now)
            return .decided(result, prefetch: false)
        }

        if let result = grantFromChunk(id, amount: amount, source: .chunk, nowMilliseconds: now, lease: lease) {
            return .decided(result, prefetch: shouldPrefetch(nowMilliseconds: now))
        }

        pending[id] = amount
        return .needStore(arrival: arrivals)
    }

    /// Decides a request that waited for a store round trip of another
    /// request, if that round trip settles it: the chunk now has room, or a
    /// round trip that started after the request arrived found too little
    /// budget or no store. Returns nil when the request needs its own round trip.
    mutating func decideAfterWait(
        _ id: ReservationID, amount: Int64, arrival: UInt64, nowMilliseconds now: Int64, lease: LeaseID?
    ) -> ReserveResult? {
        guard pending[id] != nil, record != nil else { return nil }

        if let result = grantFromChunk(id, amount: amount, source: .store, nowMilliseconds: now, lease: lease) {
            return result
        }

        guard let last = lastStoreAnswer, last.arrival >= arrival else { return nil }
        switch last.answer {
        case .budget(let free):
            let need = amount - usableAvailable(lease: lease)
            guard free < need else { return nil }
            return deny(id, amount: amount, .limitReached, nowMilliseconds: now)
        case .unreachable:
            return finishReserveWithoutStore(id, amount: amount, nowMilliseconds: now, lease: lease)
        }
    }

    /// Decides a request after a store round trip for it: from the refilled
    /// chunk, or denied because the budget is spent.
    mutating func finishReserve(_ id: ReservationID, amount: Int64, nowMilliseconds now: Int64, lease: LeaseID?) -> ReserveResult {
        if let existing = reservations[id] {
            return ReserveResult(requestID: id, amount: amount, outcome: existing.outcome, replayed: true)
        }
        if let record, amount > record.policy.limit {
            return deny(id, amount: amount, .amountExceedsLimit, nowMilliseconds: now)
        }
        if let result = grantFromChunk(id, amount: amount, source: .store, nowMilliseconds: now, lease: lease) {
            return result
        }
        return deny(id, amount: amount, .limitReached, nowMilliseconds: now)
    }

    /// Decides a request whose store round trip failed: from the chunk if it
    /// has room after all, otherwise by the policy's fail mode. Without a
    /// known policy the quota fails closed.
    mutating func finishReserveWithoutStore(
        _ id: ReservationID, amount: Int64, nowMilliseconds now: Int64, lease: LeaseID?
    ) -> ReserveResult {
        if let existing = reservations[id] {
            return ReserveResult(requestID: id, amount: amount, outcome: existing.outcome, replayed: true)
        }
        if let result = grantFromChunk(id, amount: amount, source: .store, nowMilliseconds: now, lease: lease) {
            return result
        }
        guard let policy = record?.policy, policy.failMode == .open else {
            return deny(id, amount: amount, .storeUnavailable, nowMilliseconds: now)
        }

        let period = currentPeriod(nowMilliseconds: now)
        let admitted = failOpenAdmitted[period, default: 0]
        guard amount <= policy.failOpenBound - admitted else {
            return deny(id, amount: amount, .failOpenBoundReached, nowMilliseconds: now)
        }

        failOpenAdmitted[period] = admitted + amount
        counters.failOpenAdmittedTokens = counters.failOpenAdmittedTokens.saturatingAdding(amount)
        let expiresAt = now + settings.reservationTTLMilliseconds
        let reservation = Reservation(
            requestID: id, amount: amount, outcome: .granted(source: .failOpen, expiresAtMilliseconds: expiresAt), state: .held,
            chunk: nil, failOpenPeriod: period)
        return store(reservation, nowMilliseconds: now)
    }

    /// Commits a held reservation: `used` tokens are consumed and the rest
    /// return to the chunk. A repeat with the same `used` returns the first result.
    mutating func commit(_ id: ReservationID, used: Int64, nowMilliseconds now: Int64) throws(QuotaError) -> SettleResult {
        expireDue(nowMilliseconds: now)
        var reservation = try existingReservation(id)

        switch reservation.state {
        case .held:
            guard used <= reservation.amount else {
                throw QuotaError(
                    .usedExceedsReserved, field: "used",
                    "used \(used) exceeds the \(reservation.amount) tokens reserved by request \(id); commit at most \(reservation.amount) and reserve again for the rest"
                )
            }
        case .committed(let firstUsed):
            guard used == firstUsed else {
                throw QuotaError(
                    .requestIDReused, field: "used",
                    "reservation \(id) was already committed with used \(firstUsed), not \(used); a commit cannot be changed")
            }
            return SettleResult(reservation: reservation, returned: reservation.amount - firstUsed, replayed: true)
        case .released, .expired, .denied:
            throw notHeld(reservation, action: "commit")
        }

        let period = currentPeriod(nowMilliseconds: now)
        if let source = reservation.chunk, source == chunk?.id {
            chunk!.reserved -= reservation.amount
            chunk!.available += reservation.amount - used
            if used > 0 { chunk!.unreported[period, default: 0] += used }
        } else if reservation.failOpenPeriod != nil, used > 0 {
            failOpenUnreported[period, default: 0] += used
        }
        reservation.state = .committed(used: used)
        reservations[id] = reservation
        retention.append(now + settings.outcomeRetentionMilliseconds, id)
        counters.committed += 1
        return SettleResult(reservation: reservation, returned: reservation.amount - used, replayed: false)
    }

    /// Releases a held reservation, returning all its tokens. Releasing a
    /// released reservation repeats the result, and releasing an expired one
    /// returns it as expired, since its tokens are already back.
    mutating func release(_ id: ReservationID, nowMilliseconds now: Int64) throws(QuotaError) -> SettleResult {
        expireDue(nowMilliseconds: now)
        var reservation = try existingReservation(id)

        switch reservation.state {
        case .held:
            break
        case .released:
            return SettleResult(reservation: reservation, returned: reservation.amount, replayed: true)
        case .expired:
            return SettleResult(reservation: reservation, returned: 0, replayed: false)
        case .committed, .denied:
            throw notHeld(reservation, action: "release")
        }

        returnTokens(of: reservation)
        reservation.state = .released
        reservations[id] = reservation
        retention.append(now + settings.outcomeRetentionMilliseconds, id)
        counters.released += 1
        return SettleResult(reservation: reservation, returned: reservation.amount, replayed: false)
    }

    /// Returns the reservation, expiring it first if its TTL has passed.
    mutating func reservation(_ id: ReservationID, nowMilliseconds now: Int64) throws(QuotaError) -> Reservation {
        expireDue(nowMilliseconds: now)
        return try existingReservation(id)
    }

    /// Expires held reservations past their TTL, returning their tokens, and
    /// drops settled outcomes past the retention time.
    mutating func expireDue(nowMilliseconds now: Int64) {
        for (deadline, id) in expiries.popDue(atMilliseconds: now) {
            guard var reservation = reservations[id], reservation.state == .held,
                reservation.expiresAtMilliseconds == deadline
            else { continue }
            returnTokens(of: reservation)
            reservation.state = .expired
            reservations[id] = reservation
            retention.append(now + settings.outcomeRetentionMilliseconds, id)
            counters.expired += 1
        }

        for (_, id) in retention.popDue(atMilliseconds: now) {
            if let reservation = reservations[id], reservation.state != .held {
                reservations[id] = nil
            }
        }
    }

    /// Forgets a request that could not be decided because the tenant has no policy.
    mutating func abandon(_ id: ReservationID) {
        pending[id] = nil
    }

    /// Records that the background refill asked for by `reserve` has ended.
    mutating func prefetchFinished() {
        prefetchScheduled = false
    }

    // MARK: Store writes

    /// Caches a record read from the store, unless a write of this region is
    /// in flight: its result brings a newer record.
    mutating func adopt(_ fresh: QuotaRecord?, revision: Int64) {
        guard write == nil, revision >= recordRevision else { return }
        record = fresh
        recordRevision = revision
    }

    /// Plans this region's next write of the record, starting from `fresh`
    /// (at modRevision `revision`).
    ///
    /// The write starts the current period if the record's has ended,
    /// reclaims the chunks of regions whose lease is not in `liveLeases`
    /// (nil skips this), reports the usage this region has not reported,
    /// credits the free part of its own reclaimed chunk, returns free tokens
    /// as `purpose` specifies, and takes budget from the free pool by
    /// `ChunkSizing`. The tokens it returns or reports leave `available` and
    /// `unreported` until the write is applied or aborted, so no request can
    /// be granted them meanwhile.
    mutating func planWrite(
        from fresh: QuotaRecord, revision: Int64, purpose: WritePurpose, nowMilliseconds now: Int64, lease: LeaseID,
        liveLeases: [String: LeaseID]?
    ) -> WritePlan {
        if write != nil {
            resolveWriteInDoubt(against: fresh)
        }

        var record = fresh
        record.roll(toPeriod: record.policy.period(atMilliseconds: now))
        let reclaimedRegions = liveLeases.map { record.reclaimExpiredChunks(liveLeases: $0, except: region) } ?? []

        // This region's chunk, as the store and the region see it.
        let entry = record.chunks[region]
        record.chunks[region] = nil
        var newEntry: QuotaRecord.Chunk
        var retiresChunk = false
        var credit: Int64 = 0
        var available: Int64 = 0

        if var local = chunk, let entry, entry.chunk == local.id, entry.sequence == local.sequence {
            local.reporting = local.unreported
            local.unreported = [:]
            let reported = local.reporting.filter { $0.key >= record.period }.values.reduce(0, +)
            record.consumed += reported

            let surplus: Int64
            switch purpose {
            case .refill: surplus = 0
            case .settle: surplus = self.surplus(of: local, nowMilliseconds: now)
            case .returnAll: surplus = local.available
            }
            local.available -= surplus
            local.returning = surplus
            available = local.available
            newEntry = QuotaRecord.Chunk(
                chunk: local.id, lease: lease, size: local.size - local.reporting.values.reduce(0, +) - surplus, sequence: local.sequence)
            chunk = local
        } else {
            // The store no longer has the local chunk: its lease expired and
            // another region reclaimed it, or this region lost track of it.
            if var local = chunk {
                retiresChunk = true
                if let reclaimed = record.reclaimed[local.id], reclaimed.region == region, reclaimed.sequence == local.sequence {
                    // The whole chunk was charged, but this region never
                    // granted its free tokens: credit them back.
                    credit = min(local.available, reclaimed.amount, record.consumed)
                    record.consumed -= credit
                    record.reclaimed[local.id] = nil
                    local.available -= credit
                    local.returning = credit
                    chunk = local
                }
            }
            if let entry {
                // An entry this region cannot account for (written before a
                // restart) is charged in full, as a reclaimed chunk would be.
                record.consumed += entry.size
            }
            newEntry = QuotaRecord.Chunk(chunk: record.nextChunk, lease: lease, size: 0, sequence: 0)
            record.nextChunk += 1
        }

        let failOpenReporting = failOpenUnreported
        failOpenUnreported = [:]
        let failOpenUsed = failOpenReporting.filter { $0.key >= record.period }.values.reduce(0, +)
        if failOpenUsed > 0 {
            let charged = min(failOpenUsed, max(0, record.free - newEntry.size))
            record.consumed += charged
            record.failOpenUsed += failOpenUsed
            record.failOpenOverLimit += failOpenUsed - charged
        }

        let free = record.free - newEntry.size
        let rate = demand.tokensPerSecond(atMilliseconds: now)
        var extra: Int64 = 0
        switch purpose {
        case .refill(let amount):
            extra = settings.sizing.extra(need: max(0, amount - available), available: available, rate: rate, free: free)
        case .settle:
            extra = settings.sizing.extra(need: 0, available: available, rate: rate, free: free)
        case .returnAll:
            break
        }
        newEntry.size += extra

        // Write only when the record changes; a sequence bump alone is no change.
        var unchanged = record
        unchanged.chunks[region] = newEntry
        if unchanged == fresh {
            restore(failOpenReporting: failOpenReporting)
            return .unchanged(free: fresh.free)
        }

        newEntry.sequence += 1
        record.chunks[region] = newEntry
        let planned = ChunkWrite(
            record: record, expectedRevision: revision, entry: newEntry, retiresChunk: retiresChunk, extra: extra, credit: credit,
            failOpenReporting: failOpenReporting, reclaimedRegions: reclaimedRegions, arrival: arrivals, freeAfter: free - extra)
        write = planned
        return .write(planned)
    }

    /// Applies the planned write, which the store accepted at `revision`.
    mutating func applyWrite(revision: Int64) {
        guard let planned = write else { return }

        if planned.retiresChunk || chunk == nil {
            chunk = LocalChunk(
                id: planned.entry.chunk, lease: planned.entry.lease, sequence: planned.entry.sequence, size: planned.entry.size,
                available: planned.extra)
        } else {
            chunk!.sequence = planned.entry.sequence
            chunk!.lease = planned.entry.lease
            chunk!.size = planned.entry.size
            chunk!.available += planned.extra
            chunk!.returning = 0
            chunk!.reporting = [:]
        }

        record = planned.record
        recordRevision = revision
        lastStoreAnswer = (planned.arrival, .budget(free: planned.freeAfter))
        write = nil
        writeInDoubt = false
        counters.writes += 1
        counters.creditedTokens = counters.creditedTokens.saturatingAdding(planned.credit)
        counters.reclaimedChunks += planned.reclaimedRegions.count
    }

    /// Undoes the planned write, which the store did not apply. `current` is
    /// the record that failed the compare, at `revision`, or nil when absent.
    mutating func abortWrite(current: QuotaRecord?, revision: Int64) {
        guard let planned = write else { return }

        if var local = chunk {
            for (period, used) in local.reporting {
                local.unreported[period, default: 0] += used
            }
            local.reporting = [:]
            local.available += local.returning
            local.returning = 0
            chunk = local
        }
        restore(failOpenReporting: planned.failOpenReporting)
        write = nil
        writeInDoubt = false
        record = current
        recordRevision = revision
    }

    /// Keeps the planned write pending because the store may or may not
    /// have applied it. The next plan resolves it against a fresh record,
    /// and until then the tokens it returns or reports stay out of use.
    mutating func markWriteInDoubt() {
        guard let planned = write else { return }
        writeInDoubt = true
        lastStoreAnswer = (planned.arrival, .unreachable)
    }

    /// Records that a store round trip for this tenant, started at arrival
    /// count `arrival`, failed.
    mutating func storeUnreachable(arrival: UInt64) {
        lastStoreAnswer = (arrival, .unreachable)
    }

    /// Records a fresh read, started at arrival count `arrival`, that needed
    /// no write, with the budget it found free.
    mutating func storeAnswered(free: Int64, arrival: UInt64) {
        lastStoreAnswer = (arrival, .budget(free: free))
    }

    /// The arrival count now. A store round trip started now answers every
    /// request that has arrived so far.
    var currentArrival: UInt64 { arrivals }

    /// Decides whether the write in doubt was applied, from the region's
    /// entry (or the reclaimed chunk) in a fresh record: only this region
    /// writes its entry, and each write has a new sequence.
    private mutating func resolveWriteInDoubt(against fresh: QuotaRecord) {
        guard let planned = write else { return }

        let entry = fresh.chunks[region]
        let reclaimed = fresh.reclaimed[planned.entry.chunk]
        let applied =
            (entry?.chunk == planned.entry.chunk && entry?.sequence == planned.entry.sequence)
            || (reclaimed?.region == region && reclaimed?.sequence == planned.entry.sequence)
        if applied {
            let (record, revision) = (self.record, recordRevision)
            applyWrite(revision: revision)
            // Keep the cached record as it was: the caller plans from `fresh`.
            self.record = record
        } else {
            abortWrite(current: record, revision: recordRevision)
        }
    }

    // MARK: Audit

    /// This region's view of the tenant for the audit.
    func regionView(nowMilliseconds now: Int64) -> QuotaRegionView {
        let period = currentPeriod(nowMilliseconds: now)
        var held = 0
        for reservation in reservations.values where reservation.state == .held {
            held += 1
        }
        return QuotaRegionView(
            chunk: chunk, heldReservations: held, failOpenAdmittedThisPeriod: failOpenAdmitted[period, default: 0],
            failOpenUnreportedTokens: failOpenUnreported.values.reduce(0, +),
            demandTokensPerSecond: demand.tokensPerSecond(atMilliseconds: now), writeInDoubt: writeInDoubt, counters: counters)
    }

    // MARK: Helpers

    private func currentPeriod(nowMilliseconds now: Int64) -> Int64 {
        guard let record else { return 0 }
        return max(record.period, record.policy.period(atMilliseconds: now))
    }

    /// Returns the chunk's free tokens when the region has the lease the chunk is tied to, else 0.
    private func usableAvailable(lease: LeaseID?) -> Int64 {
        guard let chunk, let lease, chunk.lease == lease else { return 0 }
        return chunk.available
    }

    private mutating func grantFromChunk(
        _ id: ReservationID, amount: Int64, source: ReservationSource, nowMilliseconds now: Int64, lease: LeaseID?
    ) -> ReserveResult? {
        guard usableAvailable(lease: lease) >= amount else { return nil }

        chunk!.available -= amount
        chunk!.reserved += amount
        let expiresAt = now + settings.reservationTTLMilliseconds
        let reservation = Reservation(
            requestID: id, amount: amount, outcome: .granted(source: source, expiresAtMilliseconds: expiresAt), state: .held,
            chunk: chunk!.id, failOpenPeriod: nil)
        return store(reservation, nowMilliseconds: now)
    }

    private mutating func deny(_ id: ReservationID, amount: Int64, _ reason: DenialReason, nowMilliseconds now: Int64) -> ReserveResult {
        let reservation = Reservation(
            requestID: id, amount: amount, outcome: .denied(reason, detail: denialDetail(reason, amount: amount)), state: .denied,
            chunk: nil, failOpenPeriod: nil)
        return store(reservation, nowMilliseconds: now)
    }

    /// Stores a decided reservation and counts it.
    private mutating func store(_ reservation: Reservation, nowMilliseconds now: Int64) -> ReserveResult {
        let id = reservation.requestID
        pending[id] = nil
        reservations[id] = reservation

        switch reservation.outcome {
        case .granted(let source, let expiresAt):
            expiries.append(expiresAt, id)
            counters.granted += 1
            counters.grantedTokens = counters.grantedTokens.saturatingAdding(reservation.amount)
            switch source {
            case .chunk: counters.servedFromChunk += 1
            case .store: counters.servedFromStore += 1
            case .failOpen: counters.servedFailOpen += 1
            }
        case .denied(let reason, _):
            retention.append(now + settings.outcomeRetentionMilliseconds, id)
            counters.denied[reason, default: 0] += 1
        }
        return ReserveResult(requestID: id, amount: reservation.amount, outcome: reservation.outcome, replayed: false)
    }

    private func replay(_ existing: Reservation, amount: Int64) throws(QuotaError) -> ReserveResult {
        guard existing.amount == amount else { throw reused(existing.requestID, firstAmount: existing.amount, amount: amount) }
        return ReserveResult(requestID: existing.requestID, amount: amount, outcome: existing.outcome, replayed: true)
    }

    private func reused(_ id: ReservationID, firstAmount: Int64, amount: Int64) -> QuotaError {
        QuotaError(
            .requestIDReused, field: "amount",
            "request id \(id) was first used to reserve \(firstAmount) tokens, not \(amount); use a new request id for a new reservation")
    }

    private func existingReservation(_ id: ReservationID) throws(QuotaError) -> Reservation {
        if let reservation = reservations[id] { return reservation }
        if pending[id] != nil {
            throw QuotaError(
                .reservationNotFound, field: "requestId", "reservation \(id) of tenant \(tenant) is still being decided; retry shortly")
        }
        throw QuotaError(
            .reservationNotFound, field: "requestId",
            "no reservation \(id) of tenant \(tenant) in region \(region); commit and release go to the region that granted it, within the retention time"
        )
    }

    private func notHeld(_ reservation: Reservation, action: String) -> QuotaError {
        QuotaError(
            .reservationNotHeld, field: "requestId",
            "cannot \(action) reservation \(reservation.requestID) because it is \(reservation.state.name); only a held reservation can be committed or released"
        )
    }

    /// Gives a held reservation's tokens back to the chunk it came from.
    /// A retired chunk was charged in full, and fail-open tokens count
    /// against the bound once admitted, so neither gets anything back.
    private mutating func returnTokens(of reservation: Reservation) {
        guard let source = reservation.chunk, source == chunk?.id else { return }
        chunk!.reserved -= reservation.amount
        chunk!.available += reservation.amount
    }

    private mutating func restore(failOpenReporting: [Int64: Int64]) {
        for (period, used) in failOpenReporting {
            failOpenUnreported[period, default: 0] += used
        }
    }

    private func targetChunk(nowMilliseconds now: Int64) -> Int64 {
        settings.sizing.target(rate: demand.tokensPerSecond(atMilliseconds: now))
    }

    /// True once, when the chunk falls below the refill fraction of its target.
    private mutating func shouldPrefetch(nowMilliseconds now: Int64) -> Bool {
        guard !prefetchScheduled, let chunk else { return false }
        let threshold = Int64((Double(targetChunk(nowMilliseconds: now)) * settings.sizing.refillFraction).rounded(.down))
        guard chunk.available < threshold else { return false }
        prefetchScheduled = true
        return true
    }

    /// Free tokens beyond twice the target chunk, returned when settling.
    private func surplus(of local: LocalChunk, nowMilliseconds now: Int64) -> Int64 {
        let target = targetChunk(nowMilliseconds: now)
        guard local.available > 2 * target else { return 0 }
        return local.available - target
    }

    private func denialDetail(_ reason: DenialReason, amount: Int64) -> String {
        let limit = record.map { "\($0.policy.limit)" } ?? "unknown"
        switch reason {
        case .limitReached:
            guard let record else { return "tenant \(tenant) has no budget left for \(amount) tokens" }
            let others = record.chunks.filter { $0.key != region }.values.reduce(0) { $0 + $1.size }
            return
                "tenant \(tenant) has reached its limit of \(limit) tokens per \(record.policy.periodSeconds) s: \(record.consumed) consumed, \(others) held by other regions' chunks, \(chunk?.available ?? 0) free here, \(amount) requested"
        case .amountExceedsLimit:
            return "the amount \(amount) exceeds tenant \(tenant)'s whole limit of \(limit) tokens, so it can never be granted"
        case .storeUnavailable:
            return
                "region \(region) cannot reach the linearizable store and its chunk lacks \(amount) tokens; tenant \(tenant)'s quota fails closed, so retry with a new request id later"
        case .failOpenBoundReached:
            let bound = record.map { "\($0.policy.failOpenBound)" } ?? "unknown"
            return
                "region \(region) cannot reach the linearizable store and has admitted its fail-open bound of \(bound) tokens for tenant \(tenant) this period"
        }
    }
}

/// The counters of one tenant in one region, since the service started.
public struct QuotaCounters: Sendable, Equatable {
    public var granted = 0
    public var grantedTokens: Int64 = 0
    /// Grants served from the local chunk with no store round trip.
    public var servedFromChunk = 0
    /// Grants that waited for a store round trip.
    public var servedFromStore = 0
    public var servedFailOpen = 0
    public var failOpenAdmittedTokens: Int64 = 0
    public var denied: [DenialReason: Int] = [:]
    public var committed = 0
    public var released = 0
    public var expired = 0
    /// Writes of the quota record this region made.
    public var writes = 0
    public var reclaimedChunks = 0
    public var creditedTokens: Int64 = 0

    /// The share of grants served from the local chunk, 0 before the first grant.
    public var chunkShare: Double {
        granted == 0 ? 0 : Double(servedFromChunk) / Double(granted)
    }
}

/// One region's local state of a tenant's quota, for the audit.
public struct QuotaRegionView: Sendable {
    let chunk: LocalChunk?
    public let heldReservations: Int
    public let failOpenAdmittedThisPeriod: Int64
    public let failOpenUnreportedTokens: Int64
    public let demandTokensPerSecond: Double
    public let writeInDoubt: Bool
    public let counters: QuotaCounters

    /// Tokens the region granted beyond what its chunk covers: 0 unless there is a bug.
    public var localOverspend: Int64 {
        guard let chunk else { return 0 }
        return max(0, chunk.accounted - chunk.size) + (chunk.available < 0 ? -chunk.available : 0)
    }
}
