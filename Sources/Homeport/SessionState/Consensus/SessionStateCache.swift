import Synchronization

/// The last known state of recently used sessions, bounded in sessions and
/// bytes, evicting the least recently used first.
///
/// A cached state may be stale, because another region may have written
/// the session since: callers use it only under a compare on its meta
/// revision. Losing an entry costs a read, never correctness.
final class SessionStateCache: Sendable {
    /// One cached session, linked into the recency list by slot indices.
    private struct Node {
        var id: SessionID
        var state: KnownSessionState
        var weight: Int
        /// The slot of the next more recently used node, or -1.
        var newer: Int
        /// The slot of the next less recently used node, or -1.
        var older: Int
    }

    /// The nodes in slots, the index from session to slot, and the two ends
    /// of the recency list.
    private struct Storage {
        var slots: [Node?] = []
        var freeSlots: [Int] = []
        var slotOfSession: [SessionID: Int] = [:]
        var newest = -1
        var oldest = -1
        var totalWeight = 0

        mutating func unlink(_ slot: Int) {
            guard let node = slots[slot] else { return }
            if node.newer >= 0 { slots[node.newer]?.older = node.older } else { newest = node.older }
            if node.older >= 0 { slots[node.older]?.newer = node.newer } else { oldest = node.newer }
            slots[slot]?.newer = -1
            slots[slot]?.older = -1
        }

        mutating func linkAsNewest(_ slot: Int) {
            slots[slot]?.older = newest
            slots[slot]?.newer = -1
            if newest >= 0 { slots[newest]?.newer = slot }
            newest = slot
            if oldest < 0 { oldest = slot }
        }

        mutating func remove(_ slot: Int) {
            guard let node = slots[slot] else { return }
            unlink(slot)
            slots[slot] = nil
            freeSlots.append(slot)
            slotOfSession[node.id] = nil
            totalWeight -= node.weight
        }
    }

    let limits: ConsensusSessionStore.CacheLimits
    /// Guards the whole cache; every operation is a few dictionary and array steps.
    private let storage = Mutex(Storage())

    init(limits: ConsensusSessionStore.CacheLimits) {
        self.limits = limits
    }

    /// Returns the session's state and marks it most recently used.
    func state(_ id: SessionID) -> KnownSessionState? {
        storage.withLock { storage in
            guard let slot = storage.slotOfSession[id] else { return nil }
            storage.unlink(slot)
            storage.linkAsNewest(slot)
            return storage.slots[slot]?.state
        }
    }

    /// Stores the state, combined with the cached one (see
    /// `KnownSessionState.merged`), and evicts the least recently used
    /// sessions past the limits.
    func store(_ id: SessionID, _ state: KnownSessionState) {
        let limits = self.limits
        storage.withLock { storage in
            var combined = state
            if let slot = storage.slotOfSession[id], let node = storage.slots[slot] {
                combined = node.state.merged(with: state)
                storage.remove(slot)
            }

            let weight = combined.weight
            let node = Node(id: id, state: combined, weight: weight, newer: -1, older: -1)
            let slot: Int
            if let free = storage.freeSlots.popLast() {
                slot = free
                storage.slots[slot] = node
            } else {
                slot = storage.slots.count
                storage.slots.append(node)
            }
            storage.slotOfSession[id] = slot
            storage.totalWeight += weight
            storage.linkAsNewest(slot)

            while storage.slotOfSession.count > limits.maximumSessions || storage.totalWeight > limits.maximumBytes,
                storage.oldest >= 0
            {
                storage.remove(storage.oldest)
            }
        }
    }

    func remove(_ id: SessionID) {
        storage.withLock { storage in
            if let slot = storage.slotOfSession[id] { storage.remove(slot) }
        }
    }

    func removeAll() {
        storage.withLock { $0 = Storage() }
    }

    /// The number of sessions cached.
    var count: Int {
        storage.withLock { $0.slotOfSession.count }
    }
}
