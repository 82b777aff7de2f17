/// The store round trips of `QuotaService`: the chunk write loop, policy
/// writes and the audit read.
extension QuotaService {
    /// Sets the tenant's policy in its quota record, creating the record
    /// when absent, with a compare-and-swap retried on conflict.
    ///
    /// A new `periodSeconds` restarts the period numbering, and the tokens
    /// consumed so far count against the new period. Throws
    /// `invalidPolicy`, `limitBelowUsage` when the new limit is below what
    /// is consumed and held in chunks (regions return a surplus within a
    /// settle interval or two, so retry then), and `storeUnavailable`.
    public func setPolicy(_ policy: QuotaPolicy, for tenant: TenantID) async throws(QuotaError) -> QuotaRecord {
        try policy.validate()
        let key = QuotaRecord.key(of: tenant)

        for attempt in 0..<configuration.maximumWriteAttempts {
            if attempt > 0 { await backOff(conflicts: attempt) }
            let (current, revision) = try await readRecord(tenant)
            let now = clock.nowMilliseconds()

            var record: QuotaRecord
            if var existing = current {
                existing.roll(toPeriod: existing.policy.period(atMilliseconds: now))
                if existing.policy.periodSeconds != policy.periodSeconds {
                    existing.period = policy.period(atMilliseconds: now)
                }
                existing.policy = policy
                record = existing
            } else {
                record = QuotaRecord(policy: policy, period: policy.period(atMilliseconds: now))
            }
            guard record.overspend == 0 else {
                throw QuotaError(
                    .limitBelowUsage, field: "limit",
                    "limit \(policy.limit) is below the \(record.consumed) tokens consumed plus \(record.outstanding) held in chunks this period; retry after the regions return their surplus, or next period"
                )
            }

            let result: CompareAndSwapResult
            do {
                result = try await store.compareAndSwap(key: key, expectedModRevision: revision, newValue: record.json.serializedBytes())
            } catch {
                throw unavailable("the quota policy of tenant \(tenant) may or may not have been written", error)
            }
            if result.succeeded {
                state.withLock { state in state.tenants[tenant]?.adopt(record, revision: result.revision) }
                logger.info(
                    "quota policy set",
                    [
                        "tenant": tenant.rawValue, "limit": "\(policy.limit)", "periodSeconds": "\(policy.periodSeconds)",
                        "failMode": policy.failMode.rawValue,
                    ])
                return record
            }
        }
        throw QuotaError(
            .storeUnavailable, "the quota record of tenant \(tenant) changed during \(configuration.maximumWriteAttempts) attempts; retry")
    }

    /// Returns the tenant's audit: the record read from the store now (or
    /// this region's last copy, marked stale, when the store cannot be
    /// reached) and this region's local view.
    ///
    /// Throws `quotaNotFound`, and `storeUnavailable` when the store cannot
    /// be reached and this region has no copy.
    public func status(tenant: TenantID) async throws(QuotaError) -> QuotaStatus {
        var storeReachable = true
        var record: QuotaRecord?
        var revision: Int64 = 0
        var liveLeases: [String: LeaseID]?

        do throws(QuotaError) {
            (record, revision) = try await readRecord(tenant)
            state.withLock { state in state.tenants[tenant]?.adopt(record, revision: revision) }
        } catch  where error.code == .storeUnavailable {
            storeReachable = false
            let cached = state.withLock { state in (state.tenants[tenant]?.record, state.tenants[tenant]?.recordRevision ?? 0) }
            guard let copy = cached.0 else { throw error }
            (record, revision) = (copy, cached.1)
        }

        // Which chunks are tied to a live lease; unknown when the store cannot be reached.
        if storeReachable {
            liveLeases = try? await leaseHolder.liveLeases()
        }

        guard let record else {
            throw QuotaError(.quotaNotFound, "tenant \(tenant) has no quota policy; set one with PUT /v1/tenants/\(tenant)/quota")
        }
        let now = clock.nowMilliseconds()
        let view = state.withLock { state in state.tenants[tenant]?.regionView(nowMilliseconds: now) }
        return QuotaStatus(
            tenant: tenant, region: region, record: record, revision: revision, storeReachable: storeReachable, liveLeases: liveLeases,
            regionView: view, nowMilliseconds: now)
    }

    /// Writes the tenant's record for `purpose`: plans from the cached
    /// record (or a fresh read), compare-and-swaps, and replans from the
    /// current record on a conflict. The caller must have entered the tenant's gate.
    ///
    /// With `reclaim`, reads the live quota leases first and reclaims the
    /// chunks of regions that lost theirs. Throws `quotaNotFound` when the
    /// record is absent, `storeUnavailable` when the store cannot be reached,
    /// this region holds no quota lease, or every attempt conflicted, and
    /// `corruptRecord`.
    func writeRecord(_ tenant: TenantID, purpose: TenantQuota.WritePurpose, reclaim: Bool) async throws(QuotaError) {
        let startArrival = state.withLock { state in state.tenants[tenant]?.currentArrival ?? 0 }
        let written: Bool
        do {
            written = try await attemptWrites(tenant, purpose: purpose, reclaim: reclaim)
        } catch  where error.code == .storeUnavailable {
            // Requests waiting behind this round trip reuse the failure
            // rather than each waiting for the store again.
            state.withLock { state in state.tenants[tenant]?.storeUnreachable(arrival: startArrival) }
            logger.warning("quota store round trip failed", ["tenant": tenant.rawValue, "error": error.detail])
            throw error
        }

        // Losing every attempt to other writers does not show that the store
        // is unreachable, so the waiting requests try for themselves.
        guard written else {
            metrics.increment(
                "homeport_quota_write_contention_total", help: "Quota record writes that lost every compare-and-swap attempt.",
                labels: ["region": region])
            logger.warning(
                "quota record write lost every attempt", ["tenant": tenant.rawValue, "attempts": "\(configuration.maximumWriteAttempts)"])
            throw QuotaError(
                .storeUnavailable,
                "the quota record of tenant \(tenant) changed during all \(configuration.maximumWriteAttempts) compare-and-swap attempts, so the store counts as unavailable for this request"
            )
        }
    }

    /// Returns true once a write is applied or none is needed, and false
    /// when every attempt lost to another writer.
    private func attemptWrites(_ tenant: TenantID, purpose: TenantQuota.WritePurpose, reclaim: Bool) async throws(QuotaError) -> Bool {
        guard let lease = await leaseHolder.ensureLease() else {
            throw QuotaError(
                .storeUnavailable, "region \(region) has no valid quota lease because the store cannot be reached; retry once it is back")
        }

        var liveLeases: [String: LeaseID]?
        if reclaim {
            do {
                liveLeases = try await leaseHolder.liveLeases()
            } catch {
                throw unavailable("the quota leases cannot be read", error)
            }
        }

        // Plan from the cached record when there is one and no write is in doubt.
        let cached = state.withLock { state in
            let quota = state.tenants[tenant, default: makeTenant(tenant)]
            state.tenants[tenant] = quota
            return (record: quota.record, revision: quota.recordRevision, inDoubt: quota.writeInDoubt, arrival: quota.currentArrival)
        }
        var (base, revision, arrival) = (cached.record, cached.revision, cached.arrival)
        var fresh = false
        if base == nil || cached.inDoubt {
            arrival = state.withLock { state in state.tenants[tenant]!.currentArrival }
            (base, revision) = try await readRecord(tenant)
            fresh = true
        }

        var conflicts = 0
        for _ in 0..<configuration.maximumWriteAttempts {
            if conflicts > 0 { await backOff(conflicts: conflicts) }
            guard let current = base else {
                state.withLock { state in state.tenants[tenant]!.adopt(nil, revision: 0) }
                throw QuotaError(.quotaNotFound, "tenant \(tenant) has no quota policy; set one with PUT /v1/tenants/\(tenant)/quota")
            }

            let now = clock.nowMilliseconds()
            let plan = state.withLock { state in
                state.tenants[tenant]!.planWrite(
                    from: current, revision: revision, purpose: purpose, nowMilliseconds: now, lease: lease, liveLeases: liveLeases)
            }

            switch plan {
            case .unchanged(let free):
                if fresh {
                    state.withLock { state in
                        state.tenants[tenant]!.adopt(current, revision: revision)
                        state.tenants[tenant]!.storeAnswered(free: free, arrival: arrival)
                    }
                    return true
                }
                // The cached record may be stale: other regions may have
                // returned budget since. Read it and plan again.
                arrival = state.withLock { state in state.tenants[tenant]!.currentArrival }
                (base, revision) = try await readRecord(tenant)
                fresh = true

            case .write(let write):
                let key = QuotaRecord.key(of: tenant)
                do {
                    try write.record.checkInvariant(key: key)
                } catch {
                    state.withLock { state in state.tenants[tenant]!.abortWrite(current: current, revision: revision) }
                    throw error
                }

                let result: CompareAndSwapResult
                do {
                    result = try await store.compareAndSwap(
                        key: key, expectedModRevision: write.expectedRevision, newValue: write.record.json.serializedBytes())
                } catch {
                    state.withLock { state in
                        if error.code == .unavailable || error.code == .unexpectedResponse {
                            state.tenants[tenant]!.markWriteInDoubt()
                        } else {
                            state.tenants[tenant]!.abortWrite(current: current, revision: revision)
                        }
                    }
                    throw unavailable("the quota record of tenant \(tenant) may or may not have been written", error)
                }

                if result.succeeded {
                    state.withLock { state in state.tenants[tenant]!.applyWrite(revision: result.revision) }
                    metrics.increment(
                        "homeport_quota_record_writes_total", help: "Writes of quota records: chunk refills, reports and returns.",
                        labels: ["region": region])
                    logWrite(tenant, write)
                    return true
                }

                // Another region wrote first: plan again from what it wrote.
                // A plan from the cached record often loses because the cache
                // is old, so only a loss on a fresh record counts as contention.
                if fresh { conflicts += 1 }
                metrics.increment(
                    "homeport_quota_write_conflicts_total", help: "Quota record compare-and-swaps that lost to another writer.",
                    labels: ["region": region])
                let currentRevision = result.current?.modRevision ?? 0
                var currentRecord: QuotaRecord?
                do throws(QuotaError) {
                    currentRecord = try result.current.map { (keyValue) throws(QuotaError) in
                        try QuotaRecord.decode(keyValue.value, key: key)
                    }
                } catch {
                    state.withLock { state in state.tenants[tenant]!.abortWrite(current: current, revision: revision) }
                    throw error
                }
                state.withLock { state in state.tenants[tenant]!.abortWrite(current: currentRecord, revision: currentRevision) }
                (base, revision) = (currentRecord, currentRevision)
                arrival = write.arrival
                fresh = true
            }
        }

        return false
    }

    /// Waits a random time after a lost compare-and-swap, up to 1 ms doubled
    /// per conflict and at most 32 ms, so regions that collide spread out.
    /// The wait is real time, not the injected clock's, because it paces
    /// real contention on the store.
    func backOff(conflicts: Int) async {
        let ceiling = min(32_000, 1000 << min(conflicts - 1, 5))
        try? await Task.sleep(for: .microseconds(Int.random(in: 0...ceiling)))
    }

    /// Reads the tenant's record and its modRevision (0 when absent).
    func readRecord(_ tenant: TenantID) async throws(QuotaError) -> (QuotaRecord?, Int64) {
        let key = QuotaRecord.key(of: tenant)
        let keyValue: KeyValue?
        do {
            keyValue = try await store.get(key)
        } catch {
            throw unavailable("the quota record of tenant \(tenant) cannot be read", error)
        }
        guard let keyValue else { return (nil, 0) }
        return (try QuotaRecord.decode(keyValue.value, key: key), keyValue.modRevision)
    }

    func unavailable(_ what: String, _ error: LinearizableStoreError) -> QuotaError {
        QuotaError(.storeUnavailable, "\(what) because the linearizable store failed: \(error)")
    }

    private func logWrite(_ tenant: TenantID, _ write: ChunkWrite) {
        for reclaimed in write.reclaimedRegions {
            logger.info("quota chunk reclaimed", ["tenant": tenant.rawValue, "from": reclaimed])
        }
        if write.credit > 0 {
            logger.info("quota chunk credited", ["tenant": tenant.rawValue, "tokens": "\(write.credit)"])
        }
        logger.debug(
            "quota record written",
            ["tenant": tenant.rawValue, "chunk": "\(write.entry.chunk)", "size": "\(write.entry.size)", "extra": "\(write.extra)"])
        if write.reclaimedRegions.count > 0 {
            metrics.increment(
                "homeport_quota_reclaimed_chunks_total", help: "Chunks of regions with an expired quota lease, reclaimed by this region.",
                labels: ["region": region], by: Double(write.reclaimedRegions.count))
        }
    }
}
