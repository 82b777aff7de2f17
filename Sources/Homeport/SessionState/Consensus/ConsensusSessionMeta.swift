/// The meta record of one session in `ConsensusSessionStore`: its identity,
/// its counters and an index of the turns it holds. Every write to the
/// session puts it, so its `modRevision` changes whenever anything of the
/// session changes.
///
/// The index lets a write check the buffer limits and drop the oldest turns
/// without reading them, at a few bytes per turn held.
struct ConsensusSessionMeta: Sendable, Equatable {
    /// One turn of the buffer, as the index records it.
    struct TurnPosition: Sendable, Equatable {
        var stamp: SessionStamp
        var contentBytes: Int
    }

    var tenant: TenantID
    var home: String
    var epoch: UInt64
    var lastSeq: UInt64 = 0
    var createdAtMilliseconds: Int64
    var replicationGap = false
    /// For a session adopted after a takeover, the old home's position up to
    /// which this session has every write; nil for a session created here.
    var adoptedPosition: SessionStamp?

    /// The turns held, in stamp order (the buffer's order).
    var turns: [TurnPosition] = []
    /// Turns already dropped from the buffer whose keys are not deleted yet.
    /// Reads skip any turn key that `turns` does not list.
    var droppedTurns: [SessionStamp] = []

    var ledgerCount = 0
    var valueCount = 0

    /// Idempotency records carry an ordinal from a counter of their own: the
    /// keys with ordinals in `idempotencyFirstOrdinal..<idempotencyNextOrdinal`
    /// are remembered, and a record with a lower ordinal is forgotten (as if
    /// absent) even while its key still exists.
    var idempotencyFirstOrdinal: UInt64 = 0
    var idempotencyNextOrdinal: UInt64 = 0
    /// Every record with an ordinal below this one has been deleted.
    var idempotencyPurgedOrdinal: UInt64 = 0

    init(tenant: TenantID, home: String, epoch: UInt64, createdAtMilliseconds: Int64) {
        self.tenant = tenant
        self.home = home
        self.epoch = epoch
        self.createdAtMilliseconds = createdAtMilliseconds
    }

    var bufferBytes: Int { turns.reduce(0) { $0 + $1.contentBytes } }

    func info(_ id: SessionID) -> SessionInfo {
        SessionInfo(
            id: id, tenant: tenant, home: home, epoch: epoch, lastStamp: SessionStamp(epoch: epoch, seq: lastSeq),
            turnCount: turns.count, bufferBytes: bufferBytes, createdAtMilliseconds: createdAtMilliseconds,
            replicationGap: replicationGap)
    }

    /// Takes the next stamp of the session.
    mutating func nextStamp() -> SessionStamp {
        lastSeq += 1
        return SessionStamp(epoch: epoch, seq: lastSeq)
    }

    /// True when the buffer's order is also the order of the turn keys, which
    /// sort by seq before epoch. Only a reconcile breaks it, by inserting an
    /// older epoch's turns with higher seqs before the new epoch's turns.
    var turnKeysFollowBufferOrder: Bool {
        var index = 1
        while index < turns.count {
            let (earlier, later) = (turns[index - 1].stamp, turns[index].stamp)
            // Key order compares seq first, then epoch.
            if later.seq < earlier.seq || (later.seq == earlier.seq && later.epoch < earlier.epoch) { return false }
            index += 1
        }
        return true
    }

    /// Returns the number of idempotency keys kept: four times the turn limit
    /// and at least 16, as `SessionRecord` keeps them.
    static func idempotencyCapacity(_ limits: SessionStoreLimits) -> UInt64 {
        UInt64(max(limits.maximumTurns * 4, 16))
    }

    /// Takes the next idempotency ordinal and forgets the oldest keys past
    /// the capacity.
    mutating func rememberIdempotencyKey(limits: SessionStoreLimits) -> UInt64 {
        let ordinal = idempotencyNextOrdinal
        idempotencyNextOrdinal += 1
        let capacity = Self.idempotencyCapacity(limits)
        if idempotencyNextOrdinal - idempotencyFirstOrdinal > capacity {
            idempotencyFirstOrdinal = idempotencyNextOrdinal - capacity
        }
        return ordinal
    }
}
