import Synchronization

/// Where a region's store records each mutation as it commits it: the
/// durable session log (when configured), then the neighbour's replication
/// outbox.
///
/// `MemorySessionStore` calls `record` while it holds the session's lock and
/// before the mutation becomes visible. So the log and the outbox receive each
/// session's mutations in stamp order, and a mutation whose log write fails is
/// undone instead of acknowledged. `RedisSessionStore` calls it after Redis
/// committed the mutation, on the session's own thread, so still in stamp
/// order. It cannot undo the write, so give it a journal without a log.
public final class SessionJournal: Sendable {
    private let log: SessionLog?
    /// The shipper, attached once after the store exists (the shipper reads
    /// snapshots from the store, so it is built after it).
    /// A weak reference, because the shipper references the store, which
    /// references this journal. The node keeps the shipper alive.
    private let replication = Mutex<WeakShipper>(WeakShipper())

    public init(log: SessionLog?) {
        self.log = log
    }

    public func attach(_ shipper: ReplicationShipper) {
        replication.withLock { $0.shipper = shipper }
    }

    /// Empties the durable log, for a store that has handed all its sessions
    /// to another region.
    func resetLog() throws(SessionLogError) {
        try log?.reset()
    }

    /// Logs the entry, then queues it for the neighbour. `measuresLag` false
    /// keeps background work (a reconcile's adoptions) out of the lag samples,
    /// which measure client writes.
    /// - Throws: `SessionLogError` when the log write fails; nothing is queued then.
    func record(_ entry: ReplicationEntry, measuresLag: Bool = true) throws(SessionLogError) {
        try log?.append(entry)
        replication.withLock { $0.shipper }?.enqueue(entry, measuresLag: measuresLag)
    }
}

/// A weak reference to the shipper a journal feeds.
struct WeakShipper: @unchecked Sendable {
    // @unchecked: only read and written under the journal's mutex.
    weak var shipper: ReplicationShipper?
}
