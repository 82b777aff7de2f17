import Synchronization

/// One region's billing counters: records usage locally, flushes it to the
/// linearizable store in batches, and reads tenant totals from the store.
///
/// Exactly once. `record` returns from memory (and the usage log, when
/// configured) without a store round trip. A flush applies each batch with
/// one transaction that checks that the batch marker and every record's
/// request key are absent and that the totals are unchanged, and writes the
/// marker, the request keys and the new totals (see `BillingStoreWriter`).
/// So a record is counted once even when:
/// - a batch is sent twice, or its response is lost and it is sent again: the
///   second send finds the batch's own marker;
/// - a region restarts and puts the same records in other batches, or a
///   client sends one request id to two regions: the request keys are
///   present, and the flush drops those records from its batch and retries;
/// - regions flush one tenant at once: the totals compare fails for all but
///   one, and the others retry with the totals their failed transaction read.
///
/// The cost of the request keys: one store key per record for the
/// deduplication window (an estimated 150 bytes of key and value with short
/// ids, plus the store's own overhead per key), and batch transactions
/// bounded by etcd's operation limit.
///
/// Dedup window. Markers and request keys are attached to a retention lease
/// with TTL `deduplicationWindow + leaseRotationInterval`, which the region
/// uses for new keys during `leaseRotationInterval` after it requested it. A
/// key therefore stays at least `deduplicationWindow` after its commit,
/// less the time a transaction spends in flight, and disappears at most
/// `deduplicationWindow + leaseRotationInterval` after it. A duplicate whose
/// batch commits inside the window is not counted. One that arrives later is
/// counted again.
///
/// Failures. While the store is unreachable, records stay buffered (up to
/// `maximumPendingRecords`) and each flush fails with `storeUnavailable`. The
/// periodic flush sends them once the store is back. Without a data
/// directory, a crash loses the records not yet flushed.
public final class BillingRecorder: Sendable {
    /// The result of `record`.
    public enum RecordOutcome: Sendable, Equatable {
        /// The record is new and buffered for the next flush.
        case accepted(UsageRecord)
        /// A record with this request id was recorded before with the same
        /// usage. Nothing changed. Carries the first record, and whether it
        /// has been flushed.
        case duplicate(UsageRecord, flushed: Bool)
    }

    private struct RetentionLease {
        var id: LeaseID
        /// When the region requested the lease, on its monotonic clock.
        var requestedAtMilliseconds: Int64
    }

    public let region: String
    public let configuration: Configuration
    private let writer: BillingStoreWriter
    private let store: any LinearizableStore
    private let clock: any WallClock
    private let logger: Logger
    private let metrics: MetricsRegistry?
    private let log: UsageLog?

    /// The records of this region. The usage log is written under the
    /// same lock, so the log's order is the buffer's order.
    private let buffer: Mutex<UsageBuffer>
    /// Each tenant's totals as this region's last transaction saw them: the
    /// first guess of the next transaction, which compares them.
    private let totalsSeen = Mutex<[TenantID: StoredTotals]>([:])
    /// The lease that new markers and request keys are attached to.
    private let retentionLease = Mutex<RetentionLease?>(nil)
    /// The latest flush. Each flush waits for the one before it, so two
    /// flushes never send the same sealed batch at once.
    private let latestFlush = Mutex<Task<Result<BillingFlushReport, BillingError>, Never>?>(nil)
    private let loop = Mutex<Task<Void, Never>?>(nil)
    /// True after a flush failed, so repeated failures log at debug and the
    /// recovery logs once.
    private let lastFlushFailed = Atomic<Bool>(false)

    /// Creates the recorder and, with a data directory, reads back the
    /// records of its usage log: unflushed ones are flushed again.
    ///
    /// - Throws: `BillingError` with `invalidConfiguration` naming the field,
    ///   or `logFailed` when the usage log cannot be opened or is corrupt.
    public init(
        region: String, configuration: Configuration = Configuration(), store: any LinearizableStore, clock: any WallClock = SystemClock(),
        logger: Logger, metrics: MetricsRegistry? = nil
    ) throws(BillingError) {
        do {
            try configuration.validate()
        } catch {
            throw BillingError(.invalidConfiguration, field: error.field, error.detail)
        }

        self.region = region
        self.configuration = configuration
        self.store = store
        self.clock = clock
        self.logger = logger.with(["region": region])
        self.metrics = metrics
        self.writer = BillingStoreWriter(store: store, region: region, clock: clock)

        var buffer = UsageBuffer(
            maximumPendingRecords: configuration.maximumPendingRecords, maximumRememberedRecords: configuration.maximumRememberedRecords)
        if let directory = configuration.dataDirectory {
            let log = try UsageLog(directory: directory, policy: configuration.fsync, clock: clock)
            buffer.restore(pending: log.recovered.pending, flushed: log.recovered.flushed)
            self.log = log
            self.logger.info(
                "usage log recovered",
                [
                    "path": log.path, "unflushedRecords": "\(log.recovered.pending.count)",
                    "flushedRecords": "\(log.recovered.flushed.count)",
                ])
        } else {
            self.log = nil
        }
        self.buffer = Mutex(buffer)
    }

    // MARK: Recording

    /// Records a request's usage locally, without a store round trip, and
    /// writes it to the usage log first when one is configured.
    ///
    /// - Returns: `accepted` for a new record, `duplicate` with the first
    ///   record for a request id this region still remembers.
    /// - Throws: `requestConflict` when the request id was recorded with other
    ///   numbers, `bufferFull` when `maximumPendingRecords` are unflushed, and
    ///   `logFailed` when the log write fails (the record is not accepted).
    ///
    /// NOTE: the log write runs on the caller's thread under the recorder's
    /// lock, so with `fsync: .always` every record waits for the disk and
    /// records are taken one at a time.
    public func record(_ record: UsageRecord) throws(BillingError) -> RecordOutcome {
        let outcome: RecordOutcome
        do {
            outcome = try buffer.withLock { buffer throws(BillingError) -> RecordOutcome in
                if let entry = try buffer.existingEntry(for: record) {
                    return .duplicate(entry.record, flushed: entry.phase == .flushed)
                }
                try log?.appendRecorded(record)
                buffer.insert(record)
                return .accepted(record)
            }
        } catch {
            countRecord(outcome: error.code.rawValue)
            throw error
        }

        switch outcome {
        case .accepted: countRecord(outcome: "accepted")
        case .duplicate: countRecord(outcome: "duplicate")
        }
        return outcome
    }

    /// The records not yet flushed, of every tenant.
    public var unflushedRecordCount: Int {
        buffer.withLock { $0.unflushedCount }
    }

    /// Returns the number of the tenant's records not yet flushed.
    public func unflushedRecordCount(of tenant: TenantID) -> Int {
        buffer.withLock { $0.unflushedCount(of: tenant) }
    }

    // MARK: Reading totals

    /// Flushes this region's records of the tenant, then reads the tenant's
    /// totals linearizably from the store.
    ///
    /// When the flush fails for a reason other than an unreachable store
    /// (such as `contention`), the totals are read anyway, and
    /// `unflushedRecords` counts this region's records that they miss.
    ///
    /// - Throws: `storeUnavailable` when the store cannot be reached, and
    ///   `storeFailed` when the read fails otherwise.
    public func totals(of tenant: TenantID, flushingFirst: Bool = true) async throws(BillingError) -> BillingTotals {
        if flushingFirst {
            do {
                _ = try await flush(tenant: tenant)
            } catch {
                switch error.code {
                case .storeUnavailable:
                    throw error
                case .invalidRecord, .requestConflict, .bufferFull, .contention, .storeFailed, .totalsOverflow, .logFailed,
                    .invalidConfiguration:
                    logger.warning("billing flush before a totals read failed", ["tenant": tenant.rawValue, "error": "\(error)"])
                }
            }
        }

        let (totals, revision) = try await writer.readTotals(of: tenant)
        return BillingTotals(
            tenant: tenant, tokens: totals.tokens, records: totals.records, asOfRevision: revision,
            unflushedRecords: unflushedRecordCount(of: tenant))
    }

    // MARK: Flushing

    /// Sends this region's unflushed records of `tenant` (of every tenant
    /// when nil) to the store, and returns what the flush did.
    ///
    /// Flushes run one after another: a call waits for the flush in progress,
    /// then sends every record recorded before the call.
    ///
    /// - Throws: the first failure among the tenants, after the other tenants
    ///   were flushed: `storeUnavailable`, `contention`, `storeFailed`,
    ///   `totalsOverflow`. The records of a failed batch stay buffered.
    @discardableResult
    public func flush(tenant: TenantID? = nil) async throws(BillingError) -> BillingFlushReport {
        let flush = latestFlush.withLock { latest in
            let previous = latest
            let next = Task {
                _ = await previous?.value
                return await self.flushBuffered(of: tenant)
            }
            latest = next
            return next
        }
        return try await flush.value.get()
    }

    /// Starts the periodic flush, every `flushInterval`. Calling it again does nothing.
    public func start() {
        let started = loop.withLock { task -> Bool in
            guard task == nil else { return false }
            task = Task {
                while !Task.isCancelled {
                    do {
                        try await self.clock.sleep(for: self.configuration.flushInterval)
                    } catch {
                        return
                    }
                    // `flushBuffered` logs failures, and the records stay for the next round.
                    _ = try? await self.flush()
                }
            }
            return true
        }
        guard started else { return }
        logger.info("billing flush loop started", ["flushIntervalMilliseconds": "\(configuration.flushInterval.wholeMilliseconds)"])
    }

    /// Stops the periodic flush and runs one last flush. Records it cannot
    /// send stay in the usage log when one is configured, and are lost otherwise.
    public func stop() async {
        let task = loop.withLock { task in
            defer { task = nil }
            return task
        }
        task?.cancel()
        await task?.value

        do {
            try await flush()
            logger.info("billing recorder stopped")
        } catch {
            logger.error(
                "billing records left unflushed at stop",
                ["unflushedRecords": "\(unflushedRecordCount)", "durable": log == nil ? "false" : "true", "error": "\(error)"])
        }
    }

    private func flushBuffered(of tenant: TenantID?) async -> Result<BillingFlushReport, BillingError> {
        let started = clock.monotonicMilliseconds()
        let batches = buffer.withLock { buffer in
            buffer.sealBatches(of: tenant, maximumRecords: configuration.maximumRecordsPerBatch)
        }
        guard !batches.isEmpty else { return .success(BillingFlushReport()) }

        var report = BillingFlushReport()
        var failures: [BillingError] = []
        var queue = batches.sorted { $0.key.rawValue < $1.key.rawValue }.map(\.value)[...]
        await withTaskGroup(of: (BillingFlushReport, BillingError?).self) { group in
            func startNextTenant() {
                guard let tenantBatches = queue.popFirst() else { return }
                group.addTask { await self.flushTenant(tenantBatches) }
            }

            for _ in 0..<configuration.maximumConcurrentTenants {
                startNextTenant()
            }
            for await (tenantReport, failure) in group {
                report.add(tenantReport)
                if let failure { failures.append(failure) }
                startNextTenant()
            }
        }

        compactLogIfDue()
        observeFlush(report, failure: failures.first, seconds: Double(clock.monotonicMilliseconds() - started) / 1000)

        guard let failure = failures.first else {
            if lastFlushFailed.exchange(false, ordering: .relaxed) {
                logger.info("billing flush recovered", ["unflushedRecords": "\(unflushedRecordCount)"])
            }
            return .success(report)
        }

        // The first failure logs at warning, or at error when it needs an
        // operator (an unreadable totals key, an overflow, a failing store).
        // Repeats log at debug until a flush succeeds again.
        let repeated = lastFlushFailed.exchange(true, ordering: .relaxed)
        let level: LogLevel
        switch failure.code {
        case .storeUnavailable, .contention:
            level = .warning
        case .invalidRecord, .requestConflict, .bufferFull, .storeFailed, .totalsOverflow, .logFailed, .invalidConfiguration:
            level = .error
        }
        logger.log(
            repeated ? .debug : level, "billing flush failed",
            ["error": "\(failure)", "failedTenants": "\(failures.count)", "unflushedRecords": "\(unflushedRecordCount)"])
        return .failure(failure)
    }

    /// Applies one tenant's batches in order, stopping at the first failure.
    private func flushTenant(_ batches: [BillingBatch]) async -> (BillingFlushReport, BillingError?) {
        var report = BillingFlushReport()
        for batch in batches {
            do {
                try await apply(batch, into: &report)
            } catch {
                return (report, error)
            }
        }
        return (report, nil)
    }

    /// Sends the batch until the store settles it: committed, found already
    /// committed, or emptied because another batch counted all its records.
    private func apply(_ sealedBatch: BillingBatch, into report: inout BillingFlushReport) async throws(BillingError) {
        var batch = sealedBatch
        var attempts = 0

        while true {
            attempts += 1
            guard attempts <= configuration.maximumAttemptsPerBatch else {
                throw BillingError(
                    .contention,
                    "batch \(batch.id) of tenant \(batch.tenant) lost the compare on the totals \(configuration.maximumAttemptsPerBatch) times; its \(batch.records.count) records stay buffered for the next flush"
                )
            }
            if attempts > 1 { report.retries += 1 }

            let expected = totalsSeen.withLock { $0[batch.tenant] } ?? .zero
            let lease = try await currentRetentionLease()
            let outcome = try await writer.attempt(batch, expected: expected, lease: lease)

            switch outcome {
            case .applied(let totals):
                remember(totals, of: batch.tenant)
                settle(batch, replacement: nil, flushedRequestIDs: batch.records.map(\.requestID))
                report.batchesApplied += 1
                report.recordsApplied += batch.records.count
                report.tokensApplied += batch.tokens
                return

            case .alreadyApplied(let totals):
                // An earlier send of this batch committed and its response was lost.
                remember(totals, of: batch.tenant)
                settle(batch, replacement: nil, flushedRequestIDs: batch.records.map(\.requestID))
                report.batchesAlreadyApplied += 1
                report.recordsAlreadyCounted += batch.records.count
                logger.info("billing batch found already applied", ["tenant": batch.tenant.rawValue, "batch": batch.id.rawValue])
                return

            case .leaseNotFound:
                forgetRetentionLease(lease)

            case .rejected(let totals, let committed):
                remember(totals, of: batch.tenant)
                guard !committed.isEmpty else {
                    // Another flush changed the totals, so retry on the totals it wrote.
                    logger.debug(
                        "billing batch retried after a totals conflict",
                        ["tenant": batch.tenant.rawValue, "batch": batch.id.rawValue, "attempt": "\(attempts)"])
                    // Regions flushing the same tenant at once would keep
                    // beating each other. A random pause in real time, up to
                    // 64 ms and growing with the attempts, spreads them out.
                    if attempts >= 2 {
                        let ceiling = min(64, 1 << min(attempts, 6))
                        try? await Task.sleep(for: .milliseconds(Int.random(in: 1...ceiling)))
                    }
                    continue
                }

                // Another batch already counted these records: this region's
                // earlier batch before a restart, or another region that got
                // the same request. Drop them and send the rest under a new id.
                for record in batch.records {
                    guard let stored = committed[record.requestID] else { continue }
                    report.recordsAlreadyCounted += 1
                    if !stored.matches(record) {
                        report.recordsConflicting += 1
                        countFlushedRecords(1, outcome: "conflict")
                        logger.error(
                            "billing record conflicts with the counted one",
                            [
                                "tenant": batch.tenant.rawValue, "request": record.requestID, "tokens": "\(record.tokens)",
                                "countedTokens": "\(stored.tokens)", "countedBatch": stored.batchID, "countedRegion": stored.region,
                            ])
                    }
                }
                let replacement = batch.removing(Set(committed.keys))
                settle(batch, replacement: replacement, flushedRequestIDs: Array(committed.keys))
                guard let replacement else { return }
                batch = replacement
            }
        }
    }

    /// Updates the buffer and the usage log once the store settled records of `batch`.
    private func settle(_ batch: BillingBatch, replacement: BillingBatch?, flushedRequestIDs: [String]) {
        let logFailure = buffer.withLock { buffer -> BillingError? in
            buffer.replace(batch, with: replacement, flushedRequestIDs: Set(flushedRequestIDs))
            do throws(BillingError) {
                try log?.appendFlushed(tenant: batch.tenant, requestIDs: flushedRequestIDs.sorted())
                return nil
            } catch {
                return error
            }
        }

        // Without the line, a restart flushes these records again, and the
        // store's request keys drop them within the deduplication window.
        if let logFailure {
            logger.error("usage log write of flushed records failed", ["tenant": batch.tenant.rawValue, "error": "\(logFailure)"])
        }
    }

    private func remember(_ totals: StoredTotals, of tenant: TenantID) {
        totalsSeen.withLock { $0[tenant] = totals }
    }

    /// Returns the retention lease for new keys, granting a new one when the
    /// current one was requested `leaseRotationInterval` ago or more.
    ///
    /// Two tenants' flushes may both grant a lease at a rotation. The extra
    /// lease only keeps keys for the same window.
    private func currentRetentionLease() async throws(BillingError) -> LeaseID {
        let now = clock.monotonicMilliseconds()
        if let lease = retentionLease.withLock({ $0 }),
            now - lease.requestedAtMilliseconds < configuration.leaseRotationInterval.wholeMilliseconds
        {
            return lease.id
        }

        let granted: Lease
        do {
            granted = try await store.grantLease(ttl: configuration.deduplicationWindow + configuration.leaseRotationInterval)
        } catch {
            throw BillingError.store(error, during: "the grant of a retention lease")
        }
        retentionLease.withLock { $0 = RetentionLease(id: granted.id, requestedAtMilliseconds: now) }
        logger.debug(
            "billing retention lease granted", ["lease": granted.id.description, "ttlMilliseconds": "\(granted.ttl.wholeMilliseconds)"])
        return granted.id
    }

    private func forgetRetentionLease(_ id: LeaseID) {
        retentionLease.withLock { lease in
            if lease?.id == id { lease = nil }
        }
        logger.info("billing retention lease not found, granting another", ["lease": id.description])
    }

    /// Rewrites the usage log once it has more than twice the lines it needs
    /// (and at least 10,000), so it does not grow without bound.
    private func compactLogIfDue() {
        guard let log else { return }

        let failure = buffer.withLock { buffer -> BillingError? in
            let needed = buffer.unflushedCount + buffer.rememberedCount
            guard log.lineCount > max(10_000, 2 * needed) else { return nil }
            do throws(BillingError) {
                try log.compact(unflushed: buffer.unflushedRecords, remembered: buffer.rememberedRecords)
                return nil
            } catch {
                return error
            }
        }

        if let failure {
            logger.error("usage log compaction failed", ["error": "\(failure)"])
        }
    }

    // MARK: Metrics

    private func countRecord(outcome: String) {
        metrics?.increment(
            "homeport_billing_records_total", help: "Usage records offered to this region, by outcome.",
            labels: ["region": region, "outcome": outcome])
    }

    private func countFlushedRecords(_ count: Int, outcome: String) {
        guard count > 0 else { return }
        metrics?.increment(
            "homeport_billing_flushed_records_total",
            help: "Usage records settled by flushes: applied, already counted by another batch, or conflicting with the counted copy.",
            labels: ["region": region, "outcome": outcome], by: Double(count))
    }

    private func observeFlush(_ report: BillingFlushReport, failure: BillingError?, seconds: Double) {
        countFlushedRecords(report.recordsApplied, outcome: "applied")
        countFlushedRecords(report.recordsAlreadyCounted - report.recordsConflicting, outcome: "already-counted")
        guard let metrics else { return }

        metrics.observe(
            "homeport_billing_flush_duration_seconds", help: "Time of one flush of buffered usage records to the linearizable store.",
            labels: ["region": region], seconds: seconds)
        metrics.setGauge(
            "homeport_billing_unflushed_records", help: "Usage records recorded in this region and not yet in the store.",
            labels: ["region": region], to: Double(unflushedRecordCount))
        if let failure {
            metrics.increment(
                "homeport_billing_flush_failures_total", help: "Flushes that left records buffered, by error code.",
                labels: ["region": region, "code": failure.code.rawValue])
        }
    }
}
