/// The store side of the billing counters: one transaction per attempt to
/// apply a batch, and the linearizable read of a tenant's totals.
///
/// An attempt is one transaction:
/// - compares: the batch marker is absent, the totals key's `modRevision` is
///   the one the caller expects, and each record's request key is absent;
/// - success: write the marker, the totals plus the batch, and each record's
///   request key, the marker and request keys attached to the retention lease;
/// - failure: read the marker, the totals and each request key, so the
///   caller learns why it failed without another round trip.
///
/// etcd rejects a transaction with more than `--max-txn-ops` operations (128
/// by default) in its compare, success or failure list. An attempt puts the
/// batch's record count plus 2 in each, hence `maximumRecordsPerBatch` ≤ 126.
struct BillingStoreWriter: Sendable {
    /// The outcome of one attempt.
    enum AttemptOutcome: Sendable, Equatable {
        /// The transaction committed. The totals are the new ones, at the
        /// transaction's revision.
        case applied(StoredTotals)
        /// The batch's marker was already in the store: an earlier send of
        /// the same batch committed, and its response never arrived.
        case alreadyApplied(StoredTotals)
        /// The totals moved since the caller read them, or some records were
        /// already counted by another batch (`committed`, by request id).
        /// Nothing was written.
        case rejected(StoredTotals, committed: [String: StoredRecord])
        /// The retention lease has expired or was revoked. Nothing was written.
        case leaseNotFound
    }

    let store: any LinearizableStore
    let region: String
    let clock: any WallClock

    /// Sends one transaction for `batch`, expecting the tenant's totals to
    /// be `expected`.
    ///
    /// - Throws: `storeUnavailable` when the store cannot be reached. The
    ///   transaction may or may not have committed then, and sending the same
    ///   batch again settles it. Also `totalsOverflow`, and `storeFailed` for
    ///   any other store failure or a stored value this code cannot read.
    func attempt(_ batch: BillingBatch, expected: StoredTotals, lease: LeaseID) async throws(BillingError) -> AttemptOutcome {
        let tenant = batch.tenant
        let batchKey = BillingKeys.batch(tenant, batch.id)
        let totalsKey = BillingKeys.totals(tenant)
        let requestKeys = batch.records.map { BillingKeys.request(tenant, $0.requestID) }
        let newTotals = try expected.adding(batch)

        let marker: JSONValue = .object([
            "region": .string(region), "records": .integer(Int64(batch.records.count)), "tokens": .integer(batch.tokens),
            "flushedAtMilliseconds": .integer(clock.nowMilliseconds()),
        ])
        var compares: [TransactionCompare] = [.absent(batchKey), .modRevision(totalsKey, equals: expected.modRevision)]
        var success: [TransactionOperation] = [
            .put(batchKey, value: marker.serializedBytes(), lease: lease), .put(totalsKey, value: newTotals.value, lease: nil),
        ]
        var failure: [TransactionOperation] = [.get(batchKey), .get(totalsKey)]
        for (record, key) in zip(batch.records, requestKeys) {
            compares.append(.absent(key))
            success.append(.put(key, value: StoredRecord(record: record, batchID: batch.id, region: region).value, lease: lease))
            failure.append(.get(key))
        }

        let result: TransactionResult
        do {
            result = try await store.transaction(compares: compares, success: success, failure: failure)
        } catch {
            if error.code == .leaseNotFound { return .leaseNotFound }
            throw BillingError.store(error, during: "the transaction of batch \(batch.id) of tenant \(tenant)")
        }

        guard !result.succeeded else {
            var committedTotals = newTotals
            committedTotals.modRevision = result.revision
            return .applied(committedTotals)
        }

        // The failure branch read the marker, the totals and each request key, in that order.
        let reads = result.results.map { result -> KeyValue? in
            if case .get(let keyValue) = result { return keyValue }
            return nil
        }
        guard reads.count == failure.count else {
            throw BillingError(
                .storeFailed,
                "the failed transaction of batch \(batch.id) returned \(reads.count) results for its \(failure.count) reads")
        }

        let currentTotals = try StoredTotals.decode(reads[1])
        if reads[0] != nil {
            return .alreadyApplied(currentTotals)
        }

        var committed: [String: StoredRecord] = [:]
        for (record, keyValue) in zip(batch.records, reads.dropFirst(2)) {
            if let keyValue {
                committed[record.requestID] = try StoredRecord.decode(keyValue)
            }
        }
        return .rejected(currentTotals, committed: committed)
    }

    /// Reads the tenant's totals linearizably and returns them with the
    /// store revision they are current at.
    ///
    /// A transaction with a single `get` returns the store's revision, which
    /// a plain `get` does not.
    ///
    /// - Throws: `storeUnavailable` when the store cannot be reached, and
    ///   `storeFailed` for another failure or an unreadable totals value.
    func readTotals(of tenant: TenantID) async throws(BillingError) -> (totals: StoredTotals, revision: Int64) {
        let key = BillingKeys.totals(tenant)
        let result: TransactionResult
        do {
            result = try await store.transaction(compares: [], success: [.get(key)], failure: [])
        } catch {
            throw BillingError.store(error, during: "the read of the totals of tenant \(tenant)")
        }

        guard case .get(let keyValue)? = result.results.first else {
            throw BillingError(.storeFailed, "the read of the totals of tenant \(tenant) returned no result")
        }
        return (try StoredTotals.decode(keyValue), result.revision)
    }
}
