/// What a `ConsensusSessionStore` knows of one session as of one revision of
/// the session's meta record.
///
/// Every write to a session puts its meta record, so while the meta record's
/// `modRevision` is still `metaRevision`, everything listed here is current.
/// A write guarded by a compare on that revision can therefore rely on it
/// without reading it again.
struct KnownSessionState: Sendable {
    var meta: ConsensusSessionMeta
    /// The meta record's `modRevision` when the state was read or written.
    var metaRevision: Int64
    /// Keys of the session as of `metaRevision`: the stored record, or nil
    /// when the key was absent. A key that is not listed is unknown.
    var records: [String: [UInt8]?]
    /// The size of the meta record, for the cache's byte budget.
    var metaBytes: Int

    init(meta: ConsensusSessionMeta, metaRevision: Int64, metaBytes: Int, records: [String: [UInt8]?] = [:]) {
        self.meta = meta
        self.metaRevision = metaRevision
        self.metaBytes = metaBytes
        self.records = records
    }

    /// Approximate bytes the state holds in memory: its records and meta, and
    /// a fixed allowance per key.
    var weight: Int {
        records.reduce(metaBytes + 256) { total, entry in total + entry.key.utf8.count + (entry.value?.count ?? 0) + 64 }
    }

    /// Returns the record of `key` if it is known: `.some(nil)` when it is
    /// known to be absent, nil when it is unknown.
    func record(_ key: String) -> [UInt8]?? {
        records[key]
    }

    /// Combines two states of one session: the one at the later meta
    /// revision wins, and at the same revision the records of both are known.
    func merged(with other: KnownSessionState) -> KnownSessionState {
        if other.metaRevision > metaRevision { return other }
        if other.metaRevision < metaRevision { return self }
        var combined = self
        combined.records.merge(other.records) { _, newer in newer }
        return combined
    }
}
