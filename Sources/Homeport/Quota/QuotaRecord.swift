/// A tenant's quota record in the linearizable store: its policy, what the
/// current period has consumed, and the lease chunks regions hold.
///
/// Key `/homeport/quotas/tenants/<tenant>`, no lease, value (JSON):
///
/// ```
/// {"limit": 50000, "periodSeconds": 3600, "failMode": "closed", "failOpenBound": 0,
///  "period": 500000, "consumed": 1200, "nextChunk": 4,
///  "chunks": {"us-east": {"chunk": 3, "lease": 7, "size": 800, "sequence": 5}},
///  "reclaimed": {"2": {"region": "eu-west", "amount": 400, "sequence": 9}},
///  "failOpenUsed": 0, "failOpenOverLimit": 0}
/// ```
///
/// Invariant, checked before every write: `consumed + Σ chunks.size ≤ limit`.
///
/// - `consumed`: tokens charged to `period`: usage that regions reported,
///   fail-open usage (up to the limit), and every reclaimed chunk in full.
/// - `chunks`: one entry per region that holds a chunk. `size` is the part
///   of the budget the region took and has not reported back; it covers the
///   region's free tokens, its held reservations and its unreported usage.
///   `lease` is the region's quota lease when it last wrote the entry,
///   `sequence` counts the region's writes of the entry, and `chunk` is a
///   tenant-wide unique id taken from `nextChunk`.
/// - `reclaimed`: chunks taken from regions whose quota lease expired,
///   keyed by chunk id. The store cannot tell how much of such a chunk its
///   region granted, so its whole `amount` moved to `consumed`. A region
///   that comes back reports the part it never granted and gets it credited.
///   The map is emptied when a new period starts.
/// - `failOpenUsed`: tokens used by fail-open reservations and reported this
///   period. The part that fit under the limit went into `consumed`, and the
///   rest is `failOpenOverLimit`.
public struct QuotaRecord: Sendable, Equatable {
    /// A region's outstanding lease chunk.
    public struct Chunk: Sendable, Equatable {
        public var chunk: Int64
        public var lease: LeaseID
        public var size: Int64
        public var sequence: Int64
    }

    /// A chunk reclaimed after its region's lease expired.
    public struct ReclaimedChunk: Sendable, Equatable {
        public var region: String
        /// The chunk's size when it was reclaimed, all of it charged to `consumed`.
        public var amount: Int64
        /// The entry's `sequence` when it was reclaimed, so the region can
        /// tell which of its writes the amount reflects.
        public var sequence: Int64
    }

    public var policy: QuotaPolicy
    public var period: Int64
    public var consumed: Int64 = 0
    public var nextChunk: Int64 = 1
    public var chunks: [String: Chunk] = [:]
    public var reclaimed: [Int64: ReclaimedChunk] = [:]
    public var failOpenUsed: Int64 = 0
    public var failOpenOverLimit: Int64 = 0

    public init(policy: QuotaPolicy, period: Int64) {
        self.policy = policy
        self.period = period
    }

    static let keyPrefix = "/homeport/quotas/tenants/"

    public static func key(of tenant: TenantID) -> String { keyPrefix + tenant.rawValue }

    /// Tokens held in every region's chunk.
    public var outstanding: Int64 { chunks.values.reduce(0) { $0 + $1.size } }

    /// Tokens neither consumed nor held in a chunk: what a region may still take.
    public var free: Int64 { policy.limit - consumed - outstanding }

    /// How far `consumed + outstanding` exceeds the limit: 0 unless the invariant is broken.
    public var overspend: Int64 { max(0, consumed + outstanding - policy.limit) }

    /// Starts period `current` when it is later than the record's: the
    /// consumption and the reclaimed chunks of the old period are dropped,
    /// while chunks stay outstanding, because their regions still hold them.
    mutating func roll(toPeriod current: Int64) {
        guard current > period else { return }
        period = current
        consumed = 0
        reclaimed = [:]
        failOpenUsed = 0
        failOpenOverLimit = 0
    }

    /// Moves every chunk whose region no longer holds the lease the chunk
    /// names into `reclaimed`, charging its whole size to `consumed`.
    /// `liveLeases` maps a region to its live quota lease. Returns the
    /// reclaimed chunks' regions.
    mutating func reclaimExpiredChunks(liveLeases: [String: LeaseID], except region: String) -> [String] {
        var regions: [String] = []
        for (owner, entry) in chunks.sorted(by: { $0.key < $1.key }) where owner != region && liveLeases[owner] != entry.lease {
            chunks[owner] = nil
            consumed += entry.size
            reclaimed[entry.chunk] = ReclaimedChunk(region: owner, amount: entry.size, sequence: entry.sequence)
            regions.append(owner)
        }
        return regions
    }

    // MARK: JSON

    public var json: JSONValue {
        var chunkFields: [String: JSONValue] = [:]
        for (region, entry) in chunks {
            chunkFields[region] = .object([
                "chunk": .integer(entry.chunk),
                "lease": .integer(entry.lease.rawValue),
                "size": .integer(entry.size),
                "sequence": .integer(entry.sequence),
            ])
        }
        var reclaimedFields: [String: JSONValue] = [:]
        for (chunk, entry) in reclaimed {
            reclaimedFields[String(chunk)] = .object([
                "region": .string(entry.region),
                "amount": .integer(entry.amount),
                "sequence": .integer(entry.sequence),
            ])
        }
        return .object([
            "limit": .integer(policy.limit),
            "periodSeconds": .integer(policy.periodSeconds),
            "failMode": .string(policy.failMode.rawValue),
            "failOpenBound": .integer(policy.failOpenBound),
            "period": .integer(period),
            "consumed": .integer(consumed),
            "nextChunk": .integer(nextChunk),
            "chunks": .object(chunkFields),
            "reclaimed": .object(reclaimedFields),
            "failOpenUsed": .integer(failOpenUsed),
            "failOpenOverLimit": .integer(failOpenOverLimit),
        ])
    }

    /// Parses a stored record, checking every field and the invariant.
    /// Throws `corruptRecord` naming the key and the field at fault.
    public static func decode(_ bytes: [UInt8], key: String) throws(QuotaError) -> QuotaRecord {
        let record: QuotaRecord
        do throws(RequestError) {
            record = try parse(bytes)
        } catch {
            throw QuotaError(.corruptRecord, field: error.field, "the quota record at \(key) is invalid: \(error.detail)")
        }

        try record.checkInvariant(key: key)
        return record
    }

    private static func parse(_ bytes: [UInt8]) throws(RequestError) -> QuotaRecord {
        var reader = try JSONObjectReader.parseBody(bytes)
        let failModeText = try reader.string("failMode", maximumBytes: 16)
        guard let failMode = QuotaFailMode(rawValue: failModeText) else {
            throw reader.invalidValue("failMode", "has unknown value \"\(failModeText.prefix(16))\"")
        }
        let policy = QuotaPolicy(
            limit: try reader.integer("limit", in: 1...QuotaPolicy.maximumTokens),
            periodSeconds: try reader.integer("periodSeconds", in: 1...QuotaPolicy.maximumPeriodSeconds),
            failMode: failMode,
            failOpenBound: try reader.integer("failOpenBound", in: 0...QuotaPolicy.maximumTokens))
        var record = QuotaRecord(policy: policy, period: try reader.integer("period", in: 0...Int64.max))
        record.consumed = try reader.integer("consumed", in: 0...QuotaPolicy.maximumTokens)
        record.nextChunk = try reader.integer("nextChunk", in: 1...Int64.max)
        record.failOpenUsed = try reader.integer("failOpenUsed", in: 0...Int64.max)
        record.failOpenOverLimit = try reader.integer("failOpenOverLimit", in: 0...Int64.max)

        var chunkReader = try reader.object("chunks")
        for region in chunkReader.keys {
            var entry = try chunkReader.object(region)
            record.chunks[region] = Chunk(
                chunk: try entry.integer("chunk", in: 1...Int64.max),
                lease: LeaseID(rawValue: try entry.integer("lease", in: Int64.min...Int64.max)),
                size: try entry.integer("size", in: 0...QuotaPolicy.maximumTokens),
                sequence: try entry.integer("sequence", in: 1...Int64.max))
            try entry.finish()
        }
        try chunkReader.finish()

        var reclaimedReader = try reader.object("reclaimed")
        for chunkText in reclaimedReader.keys {
            guard let chunk = Int64(chunkText), chunk > 0 else {
                throw reclaimedReader.invalidValue(chunkText, "is not a chunk id")
            }
            var entry = try reclaimedReader.object(chunkText)
            record.reclaimed[chunk] = ReclaimedChunk(
                region: try entry.string("region", maximumBytes: 256),
                amount: try entry.integer("amount", in: 0...QuotaPolicy.maximumTokens),
                sequence: try entry.integer("sequence", in: 1...Int64.max))
            try entry.finish()
        }
        try reclaimedReader.finish()
        try reader.finish()
        return record
    }

    /// Throws `corruptRecord` unless `consumed + outstanding ≤ limit`.
    func checkInvariant(key: String) throws(QuotaError) {
        guard overspend == 0 else {
            throw QuotaError(
                .corruptRecord,
                "the quota record at \(key) breaks its invariant: consumed \(consumed) plus outstanding chunks \(outstanding) exceeds the limit \(policy.limit)"
            )
        }
    }
}
