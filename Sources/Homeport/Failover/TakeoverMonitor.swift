import Synchronization

/// Watches the leases of the regions whose neighbour this region is, and
/// takes one over when its lease has expired. It writes the takeover record
/// in one transaction with the check that the lease key is gone. So it wins
/// only against a region that no longer holds its lease, and only one
/// watcher wins. It also picks up records it won before a restart of its own.
///
/// A region fences itself a safety margin before its lease expires, so by
/// the time the lease key is gone the old home has stopped serving, and no
/// two regions serve a session in the same epoch.
public final class TakeoverMonitor: Sendable {
    public let region: String
    /// The regions whose standby copies this region holds.
    public let watched: [String]
    private let store: any LinearizableStore
    private let clock: any WallClock
    private let logger: Logger
    private let interval: Duration
    /// The records naming this region, by failed home, and callers waiting for one.
    private let state = Mutex<(records: [String: TakeoverRecord], waiters: [String: [CheckedContinuation<Void, Never>]])>(([:], [:]))
    private let loop = Mutex<Task<Void, Never>?>(nil)

    public init(
        region: String, watched: [String], store: any LinearizableStore, clock: any WallClock, logger: Logger,
        interval: Duration = .milliseconds(500)
    ) {
        self.region = region
        self.watched = watched
        self.store = store
        self.clock = clock
        self.logger = logger.with(["region": region])
        self.interval = interval
    }

    /// True once this region has taken over `home`.
    public func hasTakenOver(_ home: String) -> Bool {
        state.withLock { $0.records[home] != nil }
    }

    /// Returns the record of this region's takeover of `home`, if any.
    public func record(of home: String) -> TakeoverRecord? {
        state.withLock { $0.records[home] }
    }

    /// Returns the takeover record that makes this region serve the token's
    /// session, or nil when the token's home still serves it.
    public func record(covering token: RoutingToken) -> TakeoverRecord? {
        state.withLock { $0.records[token.home] }.flatMap { $0.covers(token) ? $0 : nil }
    }

    /// Returns once this region has taken over `home`.
    public func takenOver(_ home: String) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                if state.records[home] != nil { return true }
                state.waiters[home, default: []].append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Checks each watched region once: loads the record that names this
    /// region, and takes the region over when its lease is gone and no
    /// takeover of it is waiting for its reconcile.
    public func step() async {
        for home in watched {
            do {
                let stored = try await store.get(TakeoverRecord.key(of: home))
                let current = stored.flatMap { TakeoverRecord(bytes: $0.value) }
                if let current, current.to == region { remember(current) }
                if let current, current.reconciledAtMilliseconds == nil { continue }

                let leaseKey = RegionLeaseKeeper.leaseKey(of: home)
                guard try await store.get(leaseKey) == nil else { continue }
                let record = TakeoverRecord(from: home, to: region, takenAtMilliseconds: clock.nowMilliseconds())
                let result = try await store.transaction(
                    compares: [.absent(leaseKey), .modRevision(TakeoverRecord.key(of: home), equals: stored?.modRevision ?? 0)],
                    success: [.put(TakeoverRecord.key(of: home), value: record.bytes)], failure: [])
                guard result.succeeded else { continue }
                remember(record)
                logger.info("takeover won", ["home": home, "takenAt": "\(record.takenAtMilliseconds)"])
            } catch {
                logger.warning("takeover check failed", ["home": home, "error": "\(error)"])
            }
        }
    }

    private func remember(_ record: TakeoverRecord) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.records[record.from] = record
            defer { state.waiters[record.from] = nil }
            return state.waiters[record.from] ?? []
        }
        for waiter in waiters { waiter.resume() }
    }

    public func start() {
        loop.withLock { task in
            guard task == nil, !watched.isEmpty else { return }
            task = Task {
                while !Task.isCancelled {
                    try? await self.clock.sleep(for: self.interval)
                    await self.step()
                }
            }
        }
    }

    public func stop() async {
        let task = loop.withLock { $0 }
        task?.cancel()
        await task?.value
    }
}
