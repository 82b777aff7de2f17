import Synchronization

/// A record in the linearizable store saying that `to` serves the sessions
/// of the failed region `from`. Written once, by compare-and-swap on an
/// absent key, so exactly one region wins a takeover.
public struct TakeoverRecord: Sendable, Equatable {
    public var from: String
    public var to: String
    /// Wall-clock milliseconds since the Unix epoch.
    public var takenAtMilliseconds: Int64

    public static func key(of region: String) -> String { "/homeport/takeovers/\(region)" }

    public var bytes: [UInt8] {
        JSONValue.object([
            "from": .string(from), "to": .string(to), "takenAt": .integer(takenAtMilliseconds),
        ]).serializedBytes()
    }

    public init(from: String, to: String, takenAtMilliseconds: Int64) {
        self.from = from
        self.to = to
        self.takenAtMilliseconds = takenAtMilliseconds
    }

    /// Decodes a stored record; nil when the bytes are not one.
    public init?(bytes: [UInt8]) {
        guard let value = try? JSONValue.parse(bytes), let from = value["from"]?.stringValue, let to = value["to"]?.stringValue,
            let takenAt = value["takenAt"]?.integerValue
        else { return nil }
        self.init(from: from, to: to, takenAtMilliseconds: takenAt)
    }
}

/// Watches the leases of the regions whose neighbour this region is, and
/// takes one over when its lease has expired. It writes the takeover record
/// with compare-and-swap. If it wins, or finds its own record, it starts
/// serving that region's sessions from its standby copies.
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
    /// Regions taken over by this region, and callers waiting for one.
    private let state = Mutex<(taken: Set<String>, waiters: [String: [CheckedContinuation<Void, Never>]])>(([], [:]))
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
        state.withLock { $0.taken.contains(home) }
    }

    /// Returns once this region has taken over `home`.
    public func takenOver(_ home: String) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                if state.taken.contains(home) { return true }
                state.waiters[home, default: []].append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Checks each watched region once and takes over those whose lease is gone.
    public func step() async {
        for home in watched where !hasTakenOver(home) {
            do {
                guard try await store.get(RegionLeaseKeeper.leaseKey(of: home)) == nil else { continue }
                let record = TakeoverRecord(from: home, to: region, takenAtMilliseconds: clock.nowMilliseconds())
                let result = try await store.compareAndSwap(
                    key: TakeoverRecord.key(of: home), expectedModRevision: 0, newValue: record.bytes, lease: nil)
                let owner = result.succeeded ? record : result.current.flatMap { TakeoverRecord(bytes: $0.value) }
                guard owner?.to == region else { continue }
                markTakenOver(home)
                logger.info("takeover won", ["home": home])
            } catch {
                logger.warning("takeover check failed", ["home": home, "error": "\(error)"])
            }
        }
    }

    private func markTakenOver(_ home: String) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.taken.insert(home)
            defer { state.waiters[home] = nil }
            return state.waiters[home] ?? []
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
