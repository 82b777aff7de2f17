/// The key layout of the billing counters in the linearizable store, and the
/// encoding of their values (JSON objects).
///
/// ```
/// /homeport/billing/tenants/<tenant>/totals               {"tokens":N,"records":M}   no lease
/// /homeport/billing/tenants/<tenant>/batches/<batchId>    batch marker               retention lease
/// /homeport/billing/tenants/<tenant>/requests/<requestId> committed record           retention lease
/// ```
///
/// Tenant ids and request ids contain no `/`, so no key of one tenant is a
/// prefix of another tenant's keys.
enum BillingKeys {
    static let root = "/homeport/billing/tenants/"

    static func tenantPrefix(_ tenant: TenantID) -> String {
        root + tenant.rawValue + "/"
    }

    /// Returns the key of the tenant's running totals. Only batch
    /// transactions write it, and each compares its `modRevision`.
    static func totals(_ tenant: TenantID) -> String {
        tenantPrefix(tenant) + "totals"
    }

    /// Returns the key of an applied batch's marker. The marker's presence
    /// means the batch's records are in the totals.
    static func batch(_ tenant: TenantID, _ batchID: BillingBatch.ID) -> String {
        tenantPrefix(tenant) + "batches/" + batchID.rawValue
    }

    /// Returns the key of one record's committed copy. Its presence means the
    /// record is in the totals.
    static func request(_ tenant: TenantID, _ requestID: String) -> String {
        tenantPrefix(tenant) + "requests/" + requestID
    }
}

/// A tenant's totals as stored, with the `modRevision` that a batch
/// transaction compares. An absent key is zero totals at `modRevision` 0.
struct StoredTotals: Sendable, Equatable {
    var tokens: Int64
    var records: Int64
    /// The totals key's `modRevision`, 0 when the key is absent.
    var modRevision: Int64

    static let zero = StoredTotals(tokens: 0, records: 0, modRevision: 0)

    var value: [UInt8] {
        JSONValue.object(["tokens": .integer(tokens), "records": .integer(records)]).serializedBytes()
    }

    /// Decodes the totals key, or returns `zero` when it is absent.
    ///
    /// - Throws: `storeFailed` when the value is not `{"tokens":N,"records":M}`
    ///   with non-negative integers, because adding to a value it cannot read
    ///   would lose the counts.
    static func decode(_ keyValue: KeyValue?) throws(BillingError) -> StoredTotals {
        guard let keyValue else { return .zero }

        let fields = try? JSONValue.parse(keyValue.value)
        guard let tokens = fields?["tokens"]?.integerValue, let records = fields?["records"]?.integerValue, tokens >= 0, records >= 0
        else {
            throw BillingError(
                .storeFailed,
                "the totals key \(quotedKey(keyValue.key)) does not hold {\"tokens\":N,\"records\":M} with non-negative integers; repair or delete it by hand"
            )
        }
        return StoredTotals(tokens: tokens, records: records, modRevision: keyValue.modRevision)
    }

    /// Returns these totals with the batch added.
    ///
    /// - Throws: `totalsOverflow` when the sum would pass `Int64.max`.
    func adding(_ batch: BillingBatch) throws(BillingError) -> StoredTotals {
        let (newTokens, tokensOverflow) = tokens.addingReportingOverflow(batch.tokens)
        let (newRecords, recordsOverflow) = records.addingReportingOverflow(Int64(batch.records.count))
        guard !tokensOverflow, !recordsOverflow else {
            throw BillingError(
                .totalsOverflow,
                "adding batch \(batch.id) (\(batch.tokens) tokens) to the totals of tenant \(batch.tenant) would pass \(Int64.max)")
        }
        return StoredTotals(tokens: newTokens, records: newRecords, modRevision: modRevision)
    }
}

/// The committed copy of a record under its request key, compared with a
/// record that arrives again in another batch.
struct StoredRecord: Sendable, Equatable {
    var tokens: Int64
    var model: String?
    /// The batch that counted the record.
    var batchID: String
    /// The region that flushed that batch.
    var region: String

    init(record: UsageRecord, batchID: BillingBatch.ID, region: String) {
        self.tokens = record.tokens
        self.model = record.model
        self.batchID = batchID.rawValue
        self.region = region
    }

    private init(tokens: Int64, model: String?, batchID: String, region: String) {
        self.tokens = tokens
        self.model = model
        self.batchID = batchID
        self.region = region
    }

    var value: [UInt8] {
        var fields: [String: JSONValue] = ["tokens": .integer(tokens), "batch": .string(batchID), "region": .string(region)]
        if let model { fields["model"] = .string(model) }
        return JSONValue.object(fields).serializedBytes()
    }

    /// Decodes a request key's value.
    ///
    /// - Throws: `storeFailed` when the value is not a stored record.
    static func decode(_ keyValue: KeyValue) throws(BillingError) -> StoredRecord {
        let fields = try? JSONValue.parse(keyValue.value)
        guard let tokens = fields?["tokens"]?.integerValue, let batchID = fields?["batch"]?.stringValue,
            let region = fields?["region"]?.stringValue
        else {
            throw BillingError(.storeFailed, "the request key \(quotedKey(keyValue.key)) does not hold a stored usage record")
        }
        return StoredRecord(tokens: tokens, model: fields?["model"]?.stringValue, batchID: batchID, region: region)
    }

    /// True when the record reports the same usage as this committed copy.
    func matches(_ record: UsageRecord) -> Bool {
        tokens == record.tokens && model == record.model
    }
}
