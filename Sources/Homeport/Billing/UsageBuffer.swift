/// The usage records of one region: those not yet in the store, grouped
/// into batches as a flush seals them, and the latest flushed ones, kept to
/// return the first record for a duplicate without a store round trip.
///
/// A value type with no I/O. `BillingRecorder` keeps it behind a mutex and
/// performs the store and log work around it.
///
/// Each record moves `pending → sealed → flushed`, and never back:
/// - `pending`: recorded, in no batch yet.
/// - `sealed`: in a batch that a flush has sent or will send. The batch keeps
///   its records and id until the store settles it, so a batch whose response
///   was lost is sent again unchanged and finds its own marker.
/// - `flushed`: counted in the store's totals, by this region's batch or by
///   another batch that held the same request id. Forgotten, oldest first,
///   beyond `maximumRememberedRecords`.
struct UsageBuffer: Sendable {
    enum Phase: Sendable, Equatable {
        case pending
        case sealed(BillingBatch.ID)
        case flushed
    }

    struct Entry: Sendable {
        var record: UsageRecord
        var phase: Phase
    }

    let maximumPendingRecords: Int
    let maximumRememberedRecords: Int

    private var entries: [UsageRecordIdentity: Entry] = [:]
    /// Records in no batch, per tenant, in arrival order.
    private var pending: [TenantID: [UsageRecord]] = [:]
    /// Sealed batches per tenant, in the order they were sealed.
    private var sealed: [TenantID: [BillingBatch]] = [:]
    /// Flushed records in the order they were flushed, from `flushedStart`
    /// on; the oldest are forgotten first.
    private var flushedOrder: [UsageRecordIdentity] = []
    private var flushedStart = 0

    /// Records not yet flushed: pending and sealed.
    private(set) var unflushedCount = 0

    init(maximumPendingRecords: Int, maximumRememberedRecords: Int) {
        self.maximumPendingRecords = maximumPendingRecords
        self.maximumRememberedRecords = maximumRememberedRecords
    }

    /// Returns the entry already recorded under the record's request id, or
    /// nil when the record is new and there is room for it.
    ///
    /// - Throws: `requestConflict` when the request id was recorded with other
    ///   tokens or another model, and `bufferFull` when a new record would pass
    ///   `maximumPendingRecords`.
    func existingEntry(for record: UsageRecord) throws(BillingError) -> Entry? {
        if let entry = entries[record.identity] {
            guard entry.record.hasSameUsage(as: record) else {
                throw BillingError(
                    .requestConflict,
                    "request \(record.requestID) of tenant \(record.tenant) was already recorded with \(entry.record.tokens) tokens and model \(entry.record.model ?? "none"). The first record is kept, so send the same numbers or a new request id."
                )
            }
            return entry
        }

        guard unflushedCount < maximumPendingRecords else {
            throw BillingError(
                .bufferFull,
                "this region has \(unflushedCount) unflushed usage records, the maximum. Retry once the linearizable store is reachable again and the records are flushed."
            )
        }
        return nil
    }

    /// Adds a new record as pending. The caller has checked it with `existingEntry(for:)`.
    mutating func insert(_ record: UsageRecord) {
        entries[record.identity] = Entry(record: record, phase: .pending)
        pending[record.tenant, default: []].append(record)
        unflushedCount += 1
    }

    /// Adds records recovered from the durable log: `flushed` ones as
    /// remembered, the others as pending, in log order. Ignores the pending
    /// limit, because the records were accepted before the restart.
    mutating func restore(pending recoveredPending: [UsageRecord], flushed recoveredFlushed: [UsageRecord]) {
        for record in recoveredFlushed where entries[record.identity] == nil {
            entries[record.identity] = Entry(record: record, phase: .flushed)
            flushedOrder.append(record.identity)
        }
        forgetOldestFlushed()

        for record in recoveredPending where entries[record.identity] == nil {
            insert(record)
        }
    }

    /// Seals the pending records of `tenant` (of every tenant when nil) into
    /// batches of at most `maximumRecords`, and returns every sealed batch of
    /// those tenants: batches sealed by earlier flushes first.
    mutating func sealBatches(of tenant: TenantID?, maximumRecords: Int) -> [TenantID: [BillingBatch]] {
        let tenants = tenant.map { [$0] } ?? Array(Set(pending.keys).union(sealed.keys))

        var batches: [TenantID: [BillingBatch]] = [:]
        for tenant in tenants {
            let records = pending.removeValue(forKey: tenant) ?? []
            var start = 0
            while start < records.count {
                let end = min(start + maximumRecords, records.count)
                let batch = BillingBatch(tenant: tenant, records: Array(records[start..<end]))
                for record in batch.records {
                    entries[record.identity]?.phase = .sealed(batch.id)
                }
                sealed[tenant, default: []].append(batch)
                start = end
            }

            if let tenantBatches = sealed[tenant], !tenantBatches.isEmpty {
                batches[tenant] = tenantBatches
            }
        }
        return batches
    }

    /// Marks the batch's records flushed and drops the batch.
    mutating func settle(_ batch: BillingBatch) {
        replace(batch, with: nil, flushedRequestIDs: Set(batch.records.map(\.requestID)))
    }

    /// Marks the records in `flushedRequestIDs` flushed, and puts
    /// `replacement` (the batch's other records under their new id) in the
    /// batch's place, or drops the batch when `replacement` is nil.
    mutating func replace(_ batch: BillingBatch, with replacement: BillingBatch?, flushedRequestIDs: Set<String>) {
        guard var tenantBatches = sealed[batch.tenant], let index = tenantBatches.firstIndex(where: { $0.id == batch.id }) else {
            return
        }

        if let replacement {
            tenantBatches[index] = replacement
            for record in replacement.records {
                entries[record.identity]?.phase = .sealed(replacement.id)
            }
        } else {
            tenantBatches.remove(at: index)
        }
        sealed[batch.tenant] = tenantBatches.isEmpty ? nil : tenantBatches

        for record in batch.records where flushedRequestIDs.contains(record.requestID) {
            guard let entry = entries[record.identity], entry.phase != .flushed else { continue }
            entries[record.identity]?.phase = .flushed
            flushedOrder.append(record.identity)
            unflushedCount -= 1
        }
        forgetOldestFlushed()
    }

    /// Returns the number of the tenant's records not yet flushed.
    func unflushedCount(of tenant: TenantID) -> Int {
        let sealedCount = sealed[tenant]?.reduce(0) { $0 + $1.records.count } ?? 0
        return (pending[tenant]?.count ?? 0) + sealedCount
    }

    /// The records not yet flushed, pending and sealed, for rewriting the log.
    var unflushedRecords: [UsageRecord] {
        sealed.values.flatMap { $0.flatMap(\.records) } + pending.values.flatMap { $0 }
    }

    /// The number of flushed records still remembered.
    var rememberedCount: Int {
        flushedOrder.count - flushedStart
    }

    /// The flushed records still remembered, oldest first.
    var rememberedRecords: [UsageRecord] {
        flushedOrder[flushedStart...].compactMap { entries[$0]?.record }
    }

    private mutating func forgetOldestFlushed() {
        while flushedOrder.count - flushedStart > maximumRememberedRecords {
            entries[flushedOrder[flushedStart]] = nil
            flushedStart += 1
        }

        // Drop the forgotten prefix once it is most of the array, so the
        // array stays within about twice the remembered count.
        if flushedStart > 1024, flushedStart * 2 > flushedOrder.count {
            flushedOrder.removeFirst(flushedStart)
            flushedStart = 0
        }
    }
}
