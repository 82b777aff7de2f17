/// One region's copy of the global registers, merged last writer wins: the
/// protocol state of global registers, without clocks or I/O.
///
/// Invariants:
/// - An entry is replaced only by an entry with a greater stamp, so merging
///   the same entries in any order, any number of times, gives the same table.
/// - Every value is at most `limits.maximumValueBytes` of compact JSON.
/// - A local write creates a register only while the table contains fewer than
///   `limits.maximumRegisters`. Because registers are never removed, each
///   region creates at most that many, and a merge accepts a new register only
///   while the table contains fewer than `maximumMergedRegisters`
///   (`limits.maximumRegisters` times the number of regions).
///
/// NOTE: registers cannot be deleted. A delete would need a tombstone that
/// outlives every region's copy of the register; write `null` to clear a value.
public struct GlobalRegisterTable: Sendable, Equatable {
    public struct Limits: Sendable, Equatable {
        /// Registers this region may create by its own writes. Default 1024.
        public var maximumRegisters: Int
        /// Largest value, in bytes of compact JSON. Default 16 KiB.
        public var maximumValueBytes: Int

        public init(maximumRegisters: Int = 1024, maximumValueBytes: Int = 16 << 10) {
            self.maximumRegisters = maximumRegisters
            self.maximumValueBytes = maximumValueBytes
        }

        /// Checks each limit's range. A value must fit in a public request
        /// body (2 MiB by default), so it is capped at 1 MiB.
        public func validate() throws(ConfigurationError) {
            guard (1...1_000_000).contains(maximumRegisters) else {
                throw ConfigurationError(
                    field: "maximumRegisters", detail: "must be from 1 to 1000000, got \(maximumRegisters)")
            }
            guard (16...(1 << 20)).contains(maximumValueBytes) else {
                throw ConfigurationError(
                    field: "maximumValueBytes", detail: "must be from 16 to 1048576 bytes, got \(maximumValueBytes)")
            }
        }
    }

    /// The outcome of merging one received entry.
    public enum MergeOutcome: Sendable, Equatable {
        /// The entry replaced the one with stamp `previous`, or was new (nil).
        case applied(previous: RegisterStamp?)
        /// The table already had this stamp or a greater one.
        case stale
        /// The entry breaks a limit of this table and was not stored.
        case rejected(GlobalStateError)
    }

    public let limits: Limits
    /// The maximum number of registers a merge may bring the table to.
    public let maximumMergedRegisters: Int
    public private(set) var entries: [String: GlobalRegisterEntry] = [:]

    /// - Parameter regionCount: the number of regions that write registers,
    ///   this one included.
    public init(limits: Limits, regionCount: Int) {
        self.limits = limits
        self.maximumMergedRegisters = limits.maximumRegisters * max(1, regionCount)
    }

    public var count: Int { entries.count }

    public func entry(_ name: String) -> GlobalRegisterEntry? {
        entries[name]
    }

    /// Stores a local write. `stamp` must be greater than the register's
    /// current stamp, which the region's hybrid logical clock guarantees.
    ///
    /// - Throws: `GlobalStateError.valueTooLarge` or `.registerLimitReached`;
    ///   the table is unchanged.
    public mutating func write(_ name: String, value: JSONValue, stamp: RegisterStamp) throws(GlobalStateError) -> GlobalRegisterEntry {
        let entry = GlobalRegisterEntry(name: name, value: value, stamp: stamp)
        try checkValueSize(entry)

        if let existing = entries[name] {
            precondition(existing.stamp < stamp, "a local write's stamp \(stamp) must be above the register's \(existing.stamp)")
        } else if entries.count >= limits.maximumRegisters {
            throw GlobalStateError(
                .registerLimitReached, subject: name,
                "register \"\(name)\" cannot be created: this region contains \(entries.count) registers and the limit is \(limits.maximumRegisters); write to an existing register instead"
            )
        }

        entries[name] = entry
        return entry
    }

    /// Merges an entry received from another region.
    public mutating func merge(_ entry: GlobalRegisterEntry) -> MergeOutcome {
        do {
            try checkValueSize(entry)
        } catch {
            return .rejected(error)
        }

        if let existing = entries[entry.name] {
            guard existing.stamp < entry.stamp else { return .stale }
            entries[entry.name] = entry
            return .applied(previous: existing.stamp)
        }

        guard entries.count < maximumMergedRegisters else {
            return .rejected(
                GlobalStateError(
                    .registerLimitReached, subject: entry.name,
                    "register \"\(entry.name)\" from \(entry.stamp.region) was not stored: this region contains \(entries.count) registers, the most a merge may reach"
                ))
        }
        entries[entry.name] = entry
        return .applied(previous: nil)
    }

    /// Returns the name and stamp of every register: what anti-entropy compares.
    public func digest() -> [String: RegisterStamp] {
        entries.mapValues(\.stamp)
    }

    /// Compares this table with another region's digest.
    ///
    /// - Returns: `newerHere` lists the entries whose stamp here is greater
    ///   than the digest's, or that the digest lacks, oldest stamp first.
    ///   `newerThere` lists the names whose digest stamp is greater than this
    ///   table's, or that this table lacks, sorted.
    public func difference(from digest: [String: RegisterStamp]) -> (newerHere: [GlobalRegisterEntry], newerThere: [String]) {
        let newerHere = entries.values.filter { entry in
            guard let remote = digest[entry.name] else { return true }
            return remote < entry.stamp
        }
        let newerThere = digest.filter { name, stamp in
            guard let local = entries[name] else { return true }
            return local.stamp < stamp
        }
        return (newerHere.sorted { $0.stamp < $1.stamp }, newerThere.keys.sorted())
    }

    private func checkValueSize(_ entry: GlobalRegisterEntry) throws(GlobalStateError) {
        let bytes = entry.valueBytes
        guard bytes <= limits.maximumValueBytes else {
            throw GlobalStateError(
                .valueTooLarge, subject: entry.name,
                "the value of register \"\(entry.name)\" is \(bytes) bytes of JSON; the limit is \(limits.maximumValueBytes)")
        }
    }
}
