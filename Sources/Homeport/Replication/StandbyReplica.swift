/// The standby copies that a region keeps of the sessions of one home region,
/// its ring predecessor, built from the batches of that home's outbox.
///
/// A value type that does no I/O: the shell that owns it passes each batch to
/// `apply` and sends the acknowledgement back to the home.
///
/// Applying is idempotent per session position, so duplicated, reordered and
/// lost batches leave the copies as the in-order batches would:
/// - An entry at or below the session's `appliedSeq` is a duplicate and is
///   ignored.
/// - The entry right after `appliedSeq` is applied, and so are the held
///   entries that follow it without a gap.
/// - An entry further ahead is held until the gap before it fills. Past
///   `maximumHeldEntries` held entries in all, a new one is discarded; it is
///   not acknowledged, so the outbox sends it again.
/// - A snapshot above `appliedSeq` replaces the copy, whatever the gap, and
///   one at or below it is a duplicate.
/// - An entry of a session the standby does not hold is held until the
///   session's creation entry or a snapshot of it arrives.
/// - An entry whose home is not `home` is ignored and counted in
///   `foreignEntryCount`: the shell routed a batch to the wrong standby.
///
/// NOTE: positions are compared by seq alone. An entry from an older epoch
/// (an old home still shipping after a takeover) is not rejected here, so the
/// shell must stop applying a home's batches once its sessions are taken over.
public struct StandbyReplica: Sendable {
    /// Settings of a standby replica.
    public struct Configuration: Sendable, Equatable {
        /// The home's session store limits. The standby drops the oldest turns
        /// past them exactly as the home does, when `dropOldestTurns` is set,
        /// so both must come from the same policy table.
        public var limits: SessionStoreLimits
        /// The maximum number of out-of-order entries held in all sessions
        /// together. Default 65,536.
        public var maximumHeldEntries: Int

        public init(limits: SessionStoreLimits = SessionStoreLimits(), maximumHeldEntries: Int = 65_536) {
            self.limits = limits
            self.maximumHeldEntries = maximumHeldEntries
        }

        /// - Throws: `ConfigurationError` naming the first field out of range.
        public func validate() throws(ConfigurationError) {
            guard maximumHeldEntries >= 0 else {
                throw ConfigurationError(
                    field: "standby.maximumHeldEntries", detail: "must be 0 or more, but is \(maximumHeldEntries)")
            }
        }
    }

    /// The currency of a standby copy, for a reader deciding whether to trust it.
    public struct Position: Sendable, Equatable {
        /// The last stamp applied without a gap.
        public var appliedStamp: SessionStamp
        /// The highest seq the home had reported in a batch, or nil before the
        /// first report.
        public var homeLastSeq: UInt64?
        /// Entries received ahead of a gap and not yet applied.
        public var heldEntries: Int

        /// True when the copy is known to miss entries the home wrote: the home
        /// reported a later seq, or entries wait behind a gap. False does not
        /// prove the copy complete, because the home may have written since
        /// its last batch.
        public var replicationGap: Bool {
            heldEntries > 0 || (homeLastSeq ?? 0) > appliedStamp.seq
        }
    }

    /// The home region whose sessions this replica copies.
    public let home: String
    public let configuration: Configuration

    private var sessions: [SessionID: StandbySession] = [:]
    /// Entries ahead of a gap, by session and seq.
    private var heldEntries: [SessionID: [UInt64: ReplicationEntry]] = [:]
    private var homeLastSeq: [SessionID: UInt64] = [:]

    /// Held entries in all sessions.
    public private(set) var heldEntryCount = 0
    /// Entries that moved a copy's position, snapshots included.
    public private(set) var appliedEntryCount = 0
    /// Entries ignored because their position was applied already.
    public private(set) var duplicateEntryCount = 0
    /// Entries not held because `maximumHeldEntries` were held already.
    public private(set) var discardedEntryCount = 0
    /// Entries ignored because another region is their home.
    public private(set) var foreignEntryCount = 0

    /// - Throws: `ConfigurationError` when `configuration` is invalid.
    public init(home: String, configuration: Configuration = Configuration()) throws(ConfigurationError) {
        try configuration.validate()
        self.home = home
        self.configuration = configuration
    }

    /// Sessions with a standby copy.
    public var sessionCount: Int { sessions.count }

    /// Every standby copy, ordered by session id.
    public var allSessions: [StandbySession] { sessions.values.sorted { $0.id < $1.id } }

    /// Returns the standby copy of a session, or nil if none has been created.
    public func session(_ id: SessionID) -> StandbySession? {
        sessions[id]
    }

    /// Returns how current the session's copy is, or nil if none has been created.
    public func position(of id: SessionID) -> Position? {
        guard let copy = sessions[id] else { return nil }
        return Position(appliedStamp: copy.appliedStamp, homeLastSeq: homeLastSeq[id], heldEntries: heldEntries[id]?.count ?? 0)
    }

    /// Applies a batch in the rules above and returns the contiguous position
    /// of every session of the batch that has a copy. Never fails: entries it
    /// cannot apply yet are held or left for the outbox to resend.
    public mutating func apply(_ batch: ReplicationBatch) -> ReplicationAcknowledgement {
        for (session, seq) in batch.homeLastSeq {
            homeLastSeq[session] = max(homeLastSeq[session] ?? 0, seq)
        }

        var batchSessions: Set<SessionID> = []
        for entry in batch.entries {
            guard entry.home == home else {
                foreignEntryCount += 1
                continue
            }
            batchSessions.insert(entry.session)
            apply(entry)
        }

        var positions: [SessionID: UInt64] = [:]
        for session in batchSessions {
            guard let copy = sessions[session] else { continue }
            positions[session] = copy.appliedSeq
        }
        return ReplicationAcknowledgement(batchID: batch.id, positions: positions)
    }

    private mutating func apply(_ entry: ReplicationEntry) {
        if case .snapshot(let snapshot) = entry.payload {
            applySnapshot(entry, snapshot)
            return
        }

        guard var copy = sessions[entry.session] else {
            guard case .sessionCreated(let createdAtMilliseconds) = entry.payload else {
                hold(entry)
                return
            }
            sessions[entry.session] = StandbySession(createdBy: entry, createdAtMilliseconds: createdAtMilliseconds)
            appliedEntryCount += 1
            applyHeldEntries(of: entry.session)
            return
        }

        guard entry.seq > copy.appliedSeq else {
            duplicateEntryCount += 1
            return
        }
        guard entry.seq == copy.appliedSeq + 1 else {
            hold(entry)
            return
        }

        copy.applyNext(entry, limits: configuration.limits)
        sessions[entry.session] = copy
        appliedEntryCount += 1
        applyHeldEntries(of: entry.session)
    }

    private mutating func applySnapshot(_ entry: ReplicationEntry, _ snapshot: SessionSnapshot) {
        if let copy = sessions[entry.session], entry.seq <= copy.appliedSeq {
            duplicateEntryCount += 1
            return
        }

        sessions[entry.session] = StandbySession(snapshotEntry: entry, snapshot: snapshot)
        appliedEntryCount += 1
        applyHeldEntries(of: entry.session)
    }

    private mutating func hold(_ entry: ReplicationEntry) {
        var held = heldEntries[entry.session] ?? [:]
        if held[entry.seq] != nil {
            duplicateEntryCount += 1
            return
        }
        guard heldEntryCount < configuration.maximumHeldEntries else {
            discardedEntryCount += 1
            return
        }

        held[entry.seq] = entry
        heldEntries[entry.session] = held
        heldEntryCount += 1
    }

    /// Discards held entries the copy has passed and applies those that now
    /// follow its position without a gap.
    private mutating func applyHeldEntries(of session: SessionID) {
        guard var held = heldEntries.removeValue(forKey: session), var copy = sessions[session] else { return }

        let passed = held.keys.filter { $0 <= copy.appliedSeq }
        for seq in passed {
            held[seq] = nil
        }
        duplicateEntryCount += passed.count
        heldEntryCount -= passed.count

        while let next = held.removeValue(forKey: copy.appliedSeq + 1) {
            heldEntryCount -= 1
            copy.applyNext(next, limits: configuration.limits)
            appliedEntryCount += 1
        }

        sessions[session] = copy
        if !held.isEmpty {
            heldEntries[session] = held
        }
    }
}
