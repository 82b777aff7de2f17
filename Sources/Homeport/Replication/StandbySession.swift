/// The standby copy of one session at its home's neighbour: the turns, ledger
/// and values the home has replicated, applied in position order.
///
/// Invariant: every entry of the session at or below `appliedSeq` has been
/// applied, either by itself or inside a snapshot. KV-cache refs are never
/// replicated, so the copy has none.
public struct StandbySession: Sendable, Equatable {
    public let id: SessionID
    public let tenant: TenantID
    public let home: String
    /// The epoch of the latest applied stamp.
    public internal(set) var epoch: UInt64
    /// Milliseconds since the Unix epoch.
    public internal(set) var createdAtMilliseconds: Int64
    /// The session's contiguous position: the highest seq up to which every
    /// entry has been applied.
    public internal(set) var appliedSeq: UInt64
    /// Turns in sequence order.
    public internal(set) var turns: [Turn]
    /// Bytes of turn content held, counted as the home counts them.
    public internal(set) var bufferBytes: Int
    /// Ledger entries by call id.
    public internal(set) var ledger: [String: LedgerEntry]
    /// Values by name.
    public internal(set) var values: [String: SessionValue]

    /// The last stamp applied.
    public var appliedStamp: SessionStamp { SessionStamp(epoch: epoch, seq: appliedSeq) }

    /// Creates an empty copy at the session's creation (position 0 or the
    /// creation entry's seq).
    init(createdBy entry: ReplicationEntry, createdAtMilliseconds: Int64) {
        self.id = entry.session
        self.tenant = entry.tenant
        self.home = entry.home
        self.epoch = entry.stamp.epoch
        self.createdAtMilliseconds = createdAtMilliseconds
        self.appliedSeq = entry.seq
        self.turns = []
        self.bufferBytes = 0
        self.ledger = [:]
        self.values = [:]
    }

    /// Creates a copy holding exactly the snapshot's state, at its stamp.
    init(snapshotEntry entry: ReplicationEntry, snapshot: SessionSnapshot) {
        self.init(createdBy: entry, createdAtMilliseconds: snapshot.createdAtMilliseconds)
        turns = snapshot.turns.sorted { $0.stamp < $1.stamp }
        bufferBytes = turns.reduce(0) { $0 + $1.content.utf8.count }
        for entry in snapshot.ledger {
            ledger[entry.callID] = entry
        }
        for value in snapshot.values {
            values[value.name] = value
        }
    }

    /// Applies the entry right after `appliedSeq` and moves the position to
    /// it. The caller guarantees that `entry.seq == appliedSeq + 1` and that
    /// the entry is not a snapshot.
    ///
    /// Records are applied by stamp, not blindly: after a snapshot that was
    /// read while the home kept writing, the copy may already hold a record
    /// newer than the entry, and the entry must not undo it.
    mutating func applyNext(_ entry: ReplicationEntry, limits: SessionStoreLimits) {
        switch entry.payload {
        case .sessionCreated(let createdAtMilliseconds):
            self.createdAtMilliseconds = createdAtMilliseconds

        case .turnAppended(let turn):
            // A turn at or below the last one held came inside a snapshot
            // already, or the home had dropped it by the time of the snapshot.
            if let last = turns.last, turn.stamp <= last.stamp { break }
            turns.append(turn)
            bufferBytes += turn.content.utf8.count
            dropOldestTurns(limits: limits)

        case .ledgerEntryWritten(let written):
            if let held = ledger[written.callID], held.stamp >= written.stamp { break }
            ledger[written.callID] = written

        case .valuePut(let value):
            if let held = values[value.name], held.stamp >= value.stamp { break }
            values[value.name] = value

        case .skipped:
            break

        case .snapshot:
            preconditionFailure("a snapshot replaces the copy; it is never applied as the next entry")
        }

        appliedSeq = entry.seq
        epoch = max(epoch, entry.stamp.epoch)
    }

    /// Drops the oldest turns past the buffer limits, as the home's store does
    /// under the drop-oldest overflow policy. The newest turn always stays.
    private mutating func dropOldestTurns(limits: SessionStoreLimits) {
        guard limits.dropOldestTurns else { return }

        var dropCount = 0
        var remainingBytes = bufferBytes
        while dropCount < turns.count - 1,
            turns.count - dropCount > limits.maximumTurns || remainingBytes > limits.maximumBufferBytes
        {
            remainingBytes -= turns[dropCount].content.utf8.count
            dropCount += 1
        }
        turns.removeFirst(dropCount)
        bufferBytes = remainingBytes
    }
}
