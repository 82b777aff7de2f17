/// The home region's queue of replication entries for one neighbour, and the
/// rules for cutting them into batches, retrying and dropping them.
///
/// A value type that does no I/O and reads no clock: the shell that owns it
/// passes every event in, with the time in milliseconds since the Unix epoch,
/// and performs the actions it returns. Times passed in must not decrease.
///
/// Life of an entry:
/// - `enqueue` makes it *ready*. Enqueueing never fails and never waits.
/// - `nextBatch` puts ready entries in a batch and makes them *in flight*.
/// - `acknowledge` drops every entry at or below the neighbour's position for
///   its session, whatever its state. Entries of the acknowledged batch above
///   the position (the standby held or discarded them) become ready again.
/// - `batchFailed` makes the batch's entries ready again, so that a later
///   batch resends them. Delivery is therefore at-least-once.
/// - `coalesce` replaces a session's entries at or below a snapshot's stamp,
///   in any state, with that one snapshot entry, which is ready.
///
/// Bound: once more than `maximumPendingEntries` entries are pending,
/// `enqueue` returns `.readSnapshot` for the session with the most pending
/// entries, and the shell calls `coalesce` or `snapshotFailed` in return. It
/// makes such a request only while no other snapshot request is outstanding,
/// and never for a session with a single pending entry, because coalescing it
/// would not shrink the queue. So the pending count can pass the bound while a
/// snapshot is being read, or when more sessions than the bound each have one
/// pending entry.
public struct ReplicationOutbox: Sendable {
    /// The batching and bound settings of an outbox.
    public struct Configuration: Sendable, Equatable {
        /// The maximum number of entries in a batch, and the ready count at
        /// which a batch is due at once (B). Default 256.
        public var maximumBatchEntries: Int
        /// The age in milliseconds at which the oldest ready entry makes a
        /// batch due even when fewer than `maximumBatchEntries` are ready (T).
        /// Zero sends every ready entry at once. Default 50.
        public var maximumBatchDelayMilliseconds: Int64
        /// The pending entry count past which the outbox coalesces a session's
        /// entries into a snapshot. Default 65,536.
        public var maximumPendingEntries: Int
        /// The approximate size (`ReplicationEntry.approximateBytes`) at which
        /// a batch is cut and due at once, so that snapshots of long buffers
        /// travel in several batches. A single larger entry still travels
        /// alone. Default 1 MiB.
        public var maximumBatchBytes: Int

        public init(
            maximumBatchEntries: Int = 256, maximumBatchDelayMilliseconds: Int64 = 50, maximumPendingEntries: Int = 65_536,
            maximumBatchBytes: Int = 1 << 20
        ) {
            self.maximumBatchEntries = maximumBatchEntries
            self.maximumBatchDelayMilliseconds = maximumBatchDelayMilliseconds
            self.maximumPendingEntries = maximumPendingEntries
            self.maximumBatchBytes = maximumBatchBytes
        }

        /// - Throws: `ConfigurationError` naming the first field out of range.
        public func validate() throws(ConfigurationError) {
            guard maximumBatchEntries >= 1 else {
                throw ConfigurationError(
                    field: "replication.maximumBatchEntries", detail: "must be at least 1, but is \(maximumBatchEntries)")
            }
            guard maximumBatchDelayMilliseconds >= 0 else {
                throw ConfigurationError(
                    field: "replication.maximumBatchDelayMilliseconds",
                    detail: "must be 0 or more milliseconds, but is \(maximumBatchDelayMilliseconds)")
            }
            guard maximumBatchBytes >= 1 else {
                throw ConfigurationError(
                    field: "replication.maximumBatchBytes", detail: "must be at least 1 byte, but is \(maximumBatchBytes)")
            }
            guard maximumPendingEntries >= maximumBatchEntries else {
                throw ConfigurationError(
                    field: "replication.maximumPendingEntries",
                    detail:
                        "must be at least maximumBatchEntries (\(maximumBatchEntries)), but is \(maximumPendingEntries)")
            }
        }
    }

    /// Work the shell must do for the outbox.
    public enum Action: Sendable, Equatable {
        /// Read the session's replicated state from the home's store, build it
        /// with `ReplicationEntry.snapshot` and pass it to `coalesce`. If the
        /// read fails, call `snapshotFailed` instead.
        case readSnapshot(SessionID)
    }

    /// The distance of the neighbour's standby behind the home, as measured
    /// by this outbox.
    public struct Lag: Sendable, Equatable {
        /// Entries enqueued and not yet acknowledged, in flight or not.
        public var pendingEntries: Int
        /// Milliseconds since the oldest unacknowledged entry was enqueued;
        /// 0 when nothing is pending.
        public var oldestEntryAgeMilliseconds: Int64
    }

    private enum EntryState: Equatable {
        case ready
        case inFlight(ReplicationBatch.ID)
    }

    private struct PendingEntry {
        var entry: ReplicationEntry
        /// For a snapshot, the enqueue time of the oldest entry it replaced.
        var enqueuedAtMilliseconds: Int64
        var state: EntryState
        /// Background work (a reconcile's adoptions): cut into batches only
        /// after the ready client writes, so bulk catch-up never delays them.
        var background = false
    }

    /// The outbox's bookkeeping for a session while it has pending entries.
    private struct SessionProgress {
        var pendingCount = 0
        /// The highest seq enqueued for the session, which is the home's
        /// lastSeq unless a mutation is still on its way to `enqueue`.
        var highestSeq: UInt64 = 0
        /// The stamp of the session's pending snapshot entry, if one is pending.
        var pendingSnapshotSeq: UInt64?
    }

    public let configuration: Configuration

    /// Pending entries in enqueue order, so that the oldest is first.
    ///
    /// NOTE: acknowledging, failing and coalescing scan the whole queue, so
    /// each costs time linear in the pending count (up to about
    /// `maximumPendingEntries`).
    private var queue: [PendingEntry] = []
    private var sessions: [SessionID: SessionProgress] = [:]
    private var inFlightBatches: Set<ReplicationBatch.ID> = []
    private var nextBatchNumber: UInt64
    /// Sessions whose snapshot the shell has been asked for and not yet delivered.
    private var requestedSnapshots: Set<SessionID> = []

    /// Batches cut by `nextBatch`, resends included.
    public private(set) var sentBatchCount = 0
    /// Snapshot entries accepted by `coalesce`: how often the outbox fell back
    /// from entries to a whole-session snapshot.
    public private(set) var snapshotCount = 0

    /// - Parameter firstBatchID: the id of the first batch. A shell that
    ///   restarts its outbox while the neighbour may still acknowledge old batches
    ///   passes a value above every id it used before.
    /// - Throws: `ConfigurationError` when `configuration` is invalid.
    public init(configuration: Configuration = Configuration(), firstBatchID: UInt64 = 1) throws(ConfigurationError) {
        try configuration.validate()
        self.configuration = configuration
        self.nextBatchNumber = firstBatchID
    }

    /// Entries enqueued and not yet acknowledged.
    public var pendingEntryCount: Int { queue.count }

    /// Batches sent and neither acknowledged nor failed.
    public var inFlightBatchCount: Int { inFlightBatches.count }

    /// Returns the entry count and age of what the neighbour has not acknowledged.
    public func lag(nowMilliseconds: Int64) -> Lag {
        guard let oldest = queue.first else {
            return Lag(pendingEntries: 0, oldestEntryAgeMilliseconds: 0)
        }
        return Lag(
            pendingEntries: queue.count, oldestEntryAgeMilliseconds: max(0, nowMilliseconds - oldest.enqueuedAtMilliseconds))
    }

    /// The time at which a batch falls due by age, in milliseconds since the
    /// Unix epoch, or nil when no entry is ready. A batch may fall due earlier,
    /// when `maximumBatchEntries` entries are ready.
    public var nextBatchDeadlineMilliseconds: Int64? {
        guard let oldestReady = queue.first(where: { $0.state == .ready }) else { return nil }
        return oldestReady.enqueuedAtMilliseconds + configuration.maximumBatchDelayMilliseconds
    }

    /// Adds a mutation the home has stored. Never fails: past the bound it
    /// returns `.readSnapshot` instead of rejecting the entry or blocking.
    ///
    /// An entry at or below the session's pending snapshot is dropped, since
    /// the snapshot contains it. A snapshot entry is passed to `coalesce`.
    public mutating func enqueue(_ entry: ReplicationEntry, nowMilliseconds: Int64, background: Bool = false) -> Action? {
        if entry.isSnapshot {
            coalesce(entry, nowMilliseconds: nowMilliseconds, background: background)
            return nil
        }

        var progress = sessions[entry.session] ?? SessionProgress()
        progress.highestSeq = max(progress.highestSeq, entry.seq)

        // The shell enqueued a mutation late, after its session's snapshot was read.
        if let snapshotSeq = progress.pendingSnapshotSeq, entry.seq <= snapshotSeq {
            sessions[entry.session] = progress
            return nil
        }

        queue.append(PendingEntry(entry: entry, enqueuedAtMilliseconds: nowMilliseconds, state: .ready, background: background))
        progress.pendingCount += 1
        sessions[entry.session] = progress

        guard queue.count > configuration.maximumPendingEntries, requestedSnapshots.isEmpty else { return nil }
        guard let largest = sessionWithMostPendingEntries(), largest.pendingCount >= 2 else { return nil }
        requestedSnapshots.insert(largest.session)
        return .readSnapshot(largest.session)
    }

    /// Cuts the next batch if one is due at `nowMilliseconds`: when
    /// `maximumBatchEntries` entries are ready, or when the oldest ready entry
    /// is `maximumBatchDelayMilliseconds` old. Returns nil otherwise.
    ///
    /// The batch takes the oldest ready entries, at most `maximumBatchEntries`,
    /// and they stay pending, in flight, until the batch is acknowledged or
    /// failed. The shell sends the batch and later calls `acknowledge` or
    /// `batchFailed` for it. A batch with neither is never resent, so the
    /// shell must treat a timeout as a failure.
    public mutating func nextBatch(nowMilliseconds: Int64) -> ReplicationBatch? {
        // Client writes first, then background entries, each in queue order.
        var readyIndices: [Int] = []
        var bytes = 0
        var full = false
        for background in [false, true] where !full {
            for index in queue.indices where queue[index].state == .ready && queue[index].background == background {
                let size = queue[index].entry.approximateBytes
                if !readyIndices.isEmpty, bytes + size > configuration.maximumBatchBytes {
                    full = true
                    break
                }
                readyIndices.append(index)
                bytes += size
                if readyIndices.count == configuration.maximumBatchEntries || bytes >= configuration.maximumBatchBytes {
                    full = true
                    break
                }
            }
        }
        guard let oldest = readyIndices.map({ queue[$0].enqueuedAtMilliseconds }).min() else { return nil }

        let oldestAge = nowMilliseconds - oldest
        guard full || oldestAge >= configuration.maximumBatchDelayMilliseconds else { return nil }

        let id = ReplicationBatch.ID(nextBatchNumber)
        nextBatchNumber += 1
        var entries: [ReplicationEntry] = []
        entries.reserveCapacity(readyIndices.count)
        var homeLastSeq: [SessionID: UInt64] = [:]
        for index in readyIndices {
            queue[index].state = .inFlight(id)
            let entry = queue[index].entry
            entries.append(entry)
            homeLastSeq[entry.session] = sessions[entry.session]?.highestSeq ?? entry.seq
        }

        inFlightBatches.insert(id)
        sentBatchCount += 1
        return ReplicationBatch(id: id, entries: entries, homeLastSeq: homeLastSeq)
    }

    /// Applies the neighbour's acknowledgement of a batch.
    ///
    /// Entries at or below a session's position are dropped even when the
    /// batch is unknown (acknowledged or failed before), because the position
    /// is what the standby holds. Entries of the batch that the standby did
    /// not apply become ready again. Acknowledging a batch twice does what
    /// acknowledging it once does.
    ///
    /// Returns `.readSnapshot` for a session whose standby waits for a
    /// position that the outbox no longer holds: the shell lost an entry, or
    /// the standby lost its copy. Only a snapshot brings such a session back.
    public mutating func acknowledge(_ acknowledgement: ReplicationAcknowledgement) -> [Action] {
        let positions = acknowledgement.positions
        removeEntries { entry in
            guard let position = positions[entry.session] else { return false }
            return entry.seq <= position
        }

        guard inFlightBatches.remove(acknowledgement.batchID) != nil else { return [] }

        var unappliedSessions: Set<SessionID> = []
        for index in queue.indices where queue[index].state == .inFlight(acknowledgement.batchID) {
            queue[index].state = .ready
            unappliedSessions.insert(queue[index].entry.session)
        }

        var actions: [Action] = []
        for session in unappliedSessions.sorted() where !requestedSnapshots.contains(session) {
            // A pending snapshot fills any gap, so only a session without one can be stuck.
            guard sessions[session]?.pendingSnapshotSeq == nil else { continue }
            let lowestSeq = queue.lazy.filter { $0.entry.session == session }.map(\.entry.seq).min()
            let neededSeq = positions[session].map { $0 + 1 } ?? 0
            guard let lowestSeq, lowestSeq > neededSeq else { continue }

            requestedSnapshots.insert(session)
            actions.append(.readSnapshot(session))
        }
        return actions
    }

    /// Makes the entries of a batch that was lost, rejected or timed out
    /// ready again. A batch that is unknown (acknowledged or failed before)
    /// changes nothing.
    public mutating func batchFailed(_ id: ReplicationBatch.ID) {
        guard inFlightBatches.remove(id) != nil else { return }
        for index in queue.indices where queue[index].state == .inFlight(id) {
            queue[index].state = .ready
        }
    }

    /// Replaces the session's pending entries at or below the snapshot's stamp
    /// with the snapshot entry, which takes the queue place and enqueue time of
    /// the session's oldest pending entry. Ends an outstanding `.readSnapshot`
    /// request for the session.
    ///
    /// A snapshot at or below a snapshot the session already has pending is
    /// dropped. The entry must be a snapshot; anything else is a programming
    /// error and traps.
    public mutating func coalesce(_ snapshot: ReplicationEntry, nowMilliseconds: Int64, background: Bool = false) {
        precondition(snapshot.isSnapshot, "coalesce takes a snapshot entry, not a \(snapshot.payload.kind) entry")
        let session = snapshot.session
        requestedSnapshots.remove(session)

        var progress = sessions[session] ?? SessionProgress()
        if let pendingSeq = progress.pendingSnapshotSeq, snapshot.seq <= pendingSeq {
            return
        }

        let placeIndex = queue.firstIndex { $0.entry.session == session }
        let enqueuedAt = placeIndex.map { queue[$0].enqueuedAtMilliseconds } ?? nowMilliseconds
        let pending = PendingEntry(entry: snapshot, enqueuedAtMilliseconds: enqueuedAt, state: .ready, background: background)

        var rebuilt: [PendingEntry] = []
        rebuilt.reserveCapacity(queue.count + 1)
        var remaining = 0
        for (index, candidate) in queue.enumerated() {
            if index == placeIndex { rebuilt.append(pending) }
            if candidate.entry.session == session {
                guard candidate.entry.seq > snapshot.seq else { continue }
                remaining += 1
            }
            rebuilt.append(candidate)
        }
        if placeIndex == nil { rebuilt.append(pending) }
        queue = rebuilt

        progress.pendingCount = remaining + 1
        progress.highestSeq = max(progress.highestSeq, snapshot.seq)
        progress.pendingSnapshotSeq = snapshot.seq
        sessions[session] = progress
        snapshotCount += 1
    }

    /// Ends an outstanding `.readSnapshot` request for the session without a
    /// snapshot. The session's entries stay pending; a later bound check or
    /// acknowledgement may ask again.
    public mutating func snapshotFailed(_ session: SessionID) {
        requestedSnapshots.remove(session)
    }

    /// Removes matching entries and updates the per-session counts, forgetting
    /// a session once it has nothing pending.
    private mutating func removeEntries(where shouldRemove: (ReplicationEntry) -> Bool) {
        var kept: [PendingEntry] = []
        kept.reserveCapacity(queue.count)
        for pending in queue {
            guard shouldRemove(pending.entry) else {
                kept.append(pending)
                continue
            }

            let session = pending.entry.session
            guard var progress = sessions[session] else { continue }
            progress.pendingCount -= 1
            if pending.entry.isSnapshot, progress.pendingSnapshotSeq == pending.entry.seq {
                progress.pendingSnapshotSeq = nil
            }
            sessions[session] = progress.pendingCount > 0 ? progress : nil
        }
        queue = kept
    }

    /// Returns the session with the most pending entries, the smaller id on a tie.
    private func sessionWithMostPendingEntries() -> (session: SessionID, pendingCount: Int)? {
        var best: (session: SessionID, pendingCount: Int)?
        for (session, progress) in sessions {
            guard let current = best else {
                best = (session, progress.pendingCount)
                continue
            }
            if progress.pendingCount > current.pendingCount
                || (progress.pendingCount == current.pendingCount && session < current.session)
            {
                best = (session, progress.pendingCount)
            }
        }
        return best
    }
}
