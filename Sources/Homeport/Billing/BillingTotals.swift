/// A tenant's totals as a linearizable read of the store returned them.
public struct BillingTotals: Sendable, Equatable {
    public var tenant: TenantID
    /// Tokens of every distinct record counted.
    public var tokens: Int64
    /// Distinct records counted.
    public var records: Int64
    /// The store revision the read saw.
    public var asOfRevision: Int64
    /// This region's records of the tenant that the totals do not include yet.
    public var unflushedRecords: Int
}
