/// Entries that a home region's outbox sends to its neighbour in one request.
///
/// A batch contains at most the outbox's `maximumBatchEntries` entries, oldest
/// first, possibly of many sessions. Sending is at-least-once: the same entry
/// may travel again in a later batch with another id, and batches may arrive
/// duplicated or out of order. The standby applies entries by position, so
/// none of that changes its state.
public struct ReplicationBatch: Sendable, Equatable {
    /// Identifies a batch among those of one outbox, so that its
    /// acknowledgement or failure can be matched to it. Ids grow by one per
    /// batch and are never reused by the same outbox.
    public struct ID: Hashable, Sendable, Comparable, CustomStringConvertible {
        public var rawValue: UInt64

        public init(_ rawValue: UInt64) {
            self.rawValue = rawValue
        }

        public static func < (lhs: ID, rhs: ID) -> Bool { lhs.rawValue < rhs.rawValue }

        public var description: String { String(rawValue) }
    }

    public var id: ID
    public var entries: [ReplicationEntry]
    /// For each session in `entries`, the highest seq the home had handed to
    /// its outbox when the batch was cut. The standby compares it with what it
    /// has applied to tell whether its copy may miss an unreplicated tail.
    public var homeLastSeq: [SessionID: UInt64]

    public init(id: ID, entries: [ReplicationEntry], homeLastSeq: [SessionID: UInt64]) {
        self.id = id
        self.entries = entries
        self.homeLastSeq = homeLastSeq
    }
}

/// The standby's reply to a batch: for each session of the batch that the
/// standby holds, the highest seq up to which it has applied every position
/// (its contiguous position). A session the standby does not hold yet (its
/// creation has not arrived) is absent.
///
/// Positions never go down for a session, but acknowledgements may arrive out
/// of order, so a later one may carry lower positions than an earlier one.
public struct ReplicationAcknowledgement: Sendable, Equatable {
    public var batchID: ReplicationBatch.ID
    public var positions: [SessionID: UInt64]

    public init(batchID: ReplicationBatch.ID, positions: [SessionID: UInt64]) {
        self.batchID = batchID
        self.positions = positions
    }
}
