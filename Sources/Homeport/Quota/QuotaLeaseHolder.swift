import Synchronization

/// The quota lease of one region: the lease its lease chunks are tied to.
///
/// The lease key `/homeport/quotas/leases/<region>` is attached to the
/// lease, with the value `{"region": "<region>", "grantedAt": <ms>}`, so it
/// vanishes when the lease expires. A chunk whose entry names a lease that
/// is not the region's live one may be reclaimed by any other region.
///
/// The holder reuses `RegionLease` for the grant, renewal and validity
/// rules: the region grants from its chunks only while `validLease()`
/// returns the lease, which stops `safetyMargin` before the store could
/// expire it.
final class QuotaLeaseHolder: Sendable {
    static let keyPrefix = "/homeport/quotas/leases/"

    static func key(of region: String) -> String { keyPrefix + region }

    let region: String
    private let store: any LinearizableStore
    private let clock: any WallClock
    private let logger: Logger
    /// The protocol state, shared by the service's loop and its requests.
    private let lease: Mutex<RegionLease>
    /// The state before the first grant, restored after a revocation.
    private let unleased: RegionLease

    init(
        region: String, configuration: RegionLease.Configuration, store: any LinearizableStore, clock: any WallClock, logger: Logger
    ) throws(ConfigurationError) {
        self.region = region
        self.store = store
        self.clock = clock
        self.logger = logger
        let initial = try RegionLease(configuration: configuration)
        self.unleased = initial
        self.lease = Mutex(initial)
    }

    /// Returns the lease while the region may grant from chunks tied to it, else nil.
    func validLease() -> LeaseID? {
        let now = clock.monotonicMilliseconds()
        return lease.withLock { lease in
            guard lease.canServe(nowMilliseconds: now) else { return nil }
            switch lease.state {
            case .held(let id, _, _), .renewing(let id, _):
                return id
            case .unleased, .granting:
                return nil
            }
        }
    }

    /// Returns the valid lease, granting or renewing it first when due.
    /// Returns nil when the store cannot be reached or another call is
    /// granting meanwhile.
    ///
    /// NOTE: a request that arrives while the loop's grant is in flight does
    /// not wait for it, so it is decided as if the store were unavailable.
    /// Step the service once before it takes requests to avoid this at start.
    func ensureLease() async -> LeaseID? {
        if let id = validLease() { return id }
        await step()
        return validLease()
    }

    /// Performs the lease action due now, if any: a grant with the lease
    /// key's put, or a keep-alive.
    func step() async {
        let now = clock.monotonicMilliseconds()
        guard let action = lease.withLock({ $0.tick(nowMilliseconds: now) }) else { return }

        switch action {
        case .grant(let ttl):
            do {
                let granted = try await store.grantLease(ttl: ttl)
                let value = JSONValue.object(["region": .string(region), "grantedAt": .integer(clock.nowMilliseconds())])
                _ = try await store.put(Self.key(of: region), value: value.serializedBytes(), lease: granted.id)
                lease.withLock { $0.granted(granted) }
                logger.info(
                    "quota lease granted", ["lease": granted.id.description, "ttlMilliseconds": "\(granted.ttl.wholeMilliseconds)"])
            } catch {
                lease.withLock { $0.failed(error.code == .leaseNotFound ? .leaseNotFound : .unavailable, nowMilliseconds: now) }
                logger.warning("quota lease grant failed", ["error": "\(error)"])
            }

        case .renew(let id):
            do {
                let remaining = try await store.keepAlive(id)
                lease.withLock { $0.renewed(remaining: remaining) }
            } catch {
                let failure: RegionLease.Failure = error.code == .leaseNotFound ? .leaseNotFound : .unavailable
                lease.withLock { $0.failed(failure, nowMilliseconds: clock.monotonicMilliseconds()) }
                logger.warning("quota lease renewal failed", ["lease": id.description, "error": "\(error)"])
            }
        }
    }

    /// Revokes the lease, so other regions may reclaim what is left of this
    /// region's chunks at once. Best effort: a failure is logged, and the
    /// lease then expires by its TTL.
    func revoke() async {
        let id = lease.withLock { lease -> LeaseID? in
            switch lease.state {
            case .held(let id, _, _), .renewing(let id, _):
                return id
            case .unleased, .granting:
                return nil
            }
        }
        guard let id else { return }

        do {
            try await store.revokeLease(id)
            logger.info("quota lease revoked", ["lease": id.description])
        } catch {
            logger.warning("quota lease revocation failed", ["lease": id.description, "error": "\(error)"])
        }
        lease.withLock { $0 = unleased }
    }

    /// Reads every region's live quota lease from the store.
    func liveLeases() async throws(LinearizableStoreError) -> [String: LeaseID] {
        var leases: [String: LeaseID] = [:]
        for keyValue in try await store.range(prefix: Self.keyPrefix) {
            guard let id = keyValue.lease else { continue }
            leases[String(keyValue.key.dropFirst(Self.keyPrefix.count))] = id
        }
        return leases
    }
}
