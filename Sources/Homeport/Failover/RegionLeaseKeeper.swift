import Synchronization

/// Keeps a region's lease in the linearizable store: the shell that performs
/// `RegionLease`'s actions. While `canServe()` is false the region's node
/// rejects requests for its home sessions with 503 `region-fenced`, so a node cut off from
/// the store stops accepting writes by itself before the store expires its
/// lease.
///
/// The lease key is `/homeport/regions/<region>/lease`; it vanishes with the
/// lease, which is what a neighbour will watch to take over.
public final class RegionLeaseKeeper: Sendable {
    public static func leaseKey(of region: String) -> String { "/homeport/regions/\(region)/lease" }

    public let region: String
    private let store: any LinearizableStore
    private let clock: any WallClock
    private let logger: Logger
    /// The protocol state, shared by the loop and `canServe()`.
    private let lease: Mutex<RegionLease>
    private let loop = Mutex<Task<Void, Never>?>(nil)
    private let grants = Atomic<Int>(0)

    public init(
        region: String, configuration: RegionLease.Configuration = RegionLease.Configuration(), store: any LinearizableStore,
        clock: any WallClock, logger: Logger
    ) throws(ConfigurationError) {
        self.region = region
        self.store = store
        self.clock = clock
        self.logger = logger.with(["region": region])
        self.lease = Mutex(try RegionLease(configuration: configuration))
    }

    /// True while the region holds a valid lease, less the safety margin.
    public func canServe() -> Bool {
        let now = clock.monotonicMilliseconds()
        return lease.withLock { $0.canServe(nowMilliseconds: now) }
    }

    /// The number of leases granted to this keeper, 0 before the first. A node
    /// that finds it changed checks for a takeover of its region before it
    /// serves on the new lease.
    public var generation: Int { grants.load(ordering: .acquiring) }

    /// Runs one step: performs the action due now, if any. The loop calls it
    /// every quarter of the renew interval; tests call it directly.
    public func step() async {
        let now = clock.monotonicMilliseconds()
        let wasServing = canServe()
        guard let action = lease.withLock({ $0.tick(nowMilliseconds: now) }) else { return }

        switch action {
        case .grant(let ttl):
            do {
                let granted = try await store.grantLease(ttl: ttl)
                // The put is unconditional: a neighbour may have taken the region
                // over meanwhile, which the node checks for before it serves on
                // the new generation (`RegionNode.reconcileIfNeeded`).
                let value = JSONValue.object(["region": .string(region), "grantedAt": .integer(clock.nowMilliseconds())]).serializedBytes()
                _ = try await store.put(Self.leaseKey(of: region), value: value, lease: granted.id)
                // Count the grant before it lets the node serve, so the node
                // never serves on it unchecked.
                grants.add(1, ordering: .releasing)
                lease.withLock { $0.granted(granted) }
                logger.info(
                    "region lease granted", ["lease": granted.id.description, "ttlMilliseconds": "\(granted.ttl.wholeMilliseconds)"])
            } catch {
                lease.withLock { $0.failed(error.code == .leaseNotFound ? .leaseNotFound : .unavailable, nowMilliseconds: now) }
                logger.warning("region lease grant failed", ["error": "\(error)"])
            }
        case .renew(let id):
            do {
                let remaining = try await store.keepAlive(id)
                lease.withLock { $0.renewed(remaining: remaining) }
            } catch {
                let failure: RegionLease.Failure = error.code == .leaseNotFound ? .leaseNotFound : .unavailable
                lease.withLock { $0.failed(failure, nowMilliseconds: clock.monotonicMilliseconds()) }
                logger.warning("region lease renewal failed", ["lease": id.description, "error": "\(error)"])
            }
        }

        let isServing = canServe()
        if wasServing != isServing {
            // The node serves again only once it has checked for a takeover.
            logger.info(isServing ? "region lease valid again" : "region fenced")
        }
    }

    public func start() {
        let interval = lease.withLock { $0.configuration.renewInterval } / 4
        loop.withLock { task in
            guard task == nil else { return }
            task = Task {
                while !Task.isCancelled {
                    await self.step()
                    try? await self.clock.sleep(for: interval)
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
