/// A region's own account of its lease chunk for one tenant.
///
/// Invariant: `size == available + reserved + Σ unreported + returning + Σ reporting`,
/// where `size` is the chunk's size in the store as of this region's last
/// applied write. So the region never grants more than the store counts as
/// its outstanding chunk.
struct LocalChunk: Sendable, Equatable {
    let id: Int64
    /// The quota lease the store entry names. The region grants from the chunk
    /// only while it holds this lease, so the chunk cannot be reclaimed while
    /// it is in use.
    var lease: LeaseID
    /// The store entry's `sequence` as of the last applied write.
    var sequence: Int64
    var size: Int64
    /// Tokens free to grant.
    var available: Int64 = 0
    /// Tokens of held reservations granted from this chunk.
    var reserved: Int64 = 0
    /// Tokens used by committed reservations and not yet reported, by period.
    var unreported: [Int64: Int64] = [:]
    /// Free tokens taken out of `available` by the write in flight, which
    /// returns them to the store (a surplus or a credit).
    var returning: Int64 = 0
    /// Usage taken out of `unreported` by the write in flight, which reports it.
    var reporting: [Int64: Int64] = [:]

    /// The tokens the chunk accounts for, which equals `size` unless there is a bug.
    var accounted: Int64 {
        available + reserved + unreported.values.reduce(0, +) + returning + reporting.values.reduce(0, +)
    }
}

/// One planned write of a tenant's quota record by a region: the record to
/// write and what the region does locally when the write is applied.
struct ChunkWrite: Sendable, Equatable {
    /// The record to put, compared against `expectedRevision`.
    let record: QuotaRecord
    /// The modRevision the record had when planned; 0 for an absent key.
    let expectedRevision: Int64
    /// This region's entry after the write.
    let entry: QuotaRecord.Chunk
    /// True when the write replaces the region's local chunk by a new one,
    /// because the store no longer has the old one.
    let retiresChunk: Bool
    /// Tokens taken from the free budget.
    let extra: Int64
    /// Tokens of a reclaimed chunk credited back because this region never granted them.
    let credit: Int64
    /// Fail-open usage taken out of the unreported counts, by period.
    let failOpenReporting: [Int64: Int64]
    /// Chunks of other regions reclaimed by this write.
    let reclaimedRegions: [String]
    /// The request arrival count when planned: every request that arrived
    /// before it may rely on the write's view of the budget.
    let arrival: UInt64
    /// The budget left in no region's chunk after the write.
    let freeAfter: Int64
}

/// Deadlines in the order they were added, for reservations that expire
/// and outcomes that are dropped. The service's TTLs are fixed, so
/// insertion order is deadline order while the clock moves forward.
///
/// NOTE: a wall clock stepped back (NTP) puts later entries behind earlier
/// ones with later deadlines, so they expire up to the step late.
struct DeadlineQueue: Sendable {
    private var items: [(deadline: Int64, id: ReservationID)] = []
    private var head = 0

    var count: Int { items.count - head }

    mutating func append(_ deadline: Int64, _ id: ReservationID) {
        items.append((deadline, id))
    }

    /// Removes and returns every entry whose deadline is at or before `now`.
    mutating func popDue(atMilliseconds now: Int64) -> [(deadline: Int64, id: ReservationID)] {
        var due: [(deadline: Int64, id: ReservationID)] = []
        while head < items.count, items[head].deadline <= now {
            due.append(items[head])
            head += 1
        }

        // Drop the consumed prefix once it is most of the storage.
        if head > 1024, head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        return due
    }
}
