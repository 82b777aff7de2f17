/// The fencing rule of one region: its node serves home sessions only while
/// it holds a valid lease in the linearizable store.
///
/// A value type that does no I/O. Its shell (`RegionLeaseKeeper`) calls
/// `tick` periodically, performs the returned action against the store, and
/// reports the outcome with `granted`, `renewed` or `failed`.
///
/// States and legal transitions:
/// - `unleased` → `granting` (tick requests a grant)
/// - `granting` → `held` (granted) | `unleased` (failed)
/// - `held` → `renewing` (tick asks for a keep-alive, every `renewInterval`)
/// - `renewing` → `held` (renewed) | `held` with the old expiry (store
///   unavailable: try again) | `unleased` (lease not found: it expired)
///
/// Validity is measured from when a request was sent, never from when its
/// response arrived, so a slow store can only shorten the lease the node
/// believes it has. `safetyMargin` covers clock drift between the node and
/// the store: the node stops serving that long before the store would expire
/// the lease.
public struct RegionLease: Sendable, Equatable {
    public struct Configuration: Sendable, Equatable {
        /// The TTL asked of the store.
        public var ttl: Duration = .seconds(5)
        /// How often a held lease is renewed; well inside the TTL.
        public var renewInterval: Duration = .milliseconds(1500)
        /// How long before the computed expiry the node stops serving.
        public var safetyMargin: Duration = .milliseconds(1000)

        public init() {}

        public func validate() throws(ConfigurationError) {
            guard ttl > .zero, renewInterval > .zero, safetyMargin >= .zero else {
                throw ConfigurationError(field: "lease", detail: "the lease TTL, renew interval and safety margin must be positive")
            }
            guard renewInterval + safetyMargin < ttl else {
                throw ConfigurationError(
                    field: "lease.renewInterval",
                    detail: "renew interval \(renewInterval) plus safety margin \(safetyMargin) must be shorter than the TTL \(ttl)")
            }
        }
    }

    public enum State: Sendable, Equatable {
        case unleased
        case granting
        case held(LeaseID, validUntilMilliseconds: Int64, renewDueMilliseconds: Int64)
        case renewing(LeaseID, validUntilMilliseconds: Int64)
    }

    /// The store call the shell must make next.
    public enum Action: Sendable, Equatable {
        /// Grant a lease of `ttl` and put the region's lease key under it.
        case grant(ttl: Duration)
        /// Send a keep-alive for the lease.
        case renew(LeaseID)
    }

    public enum Failure: Sendable, Equatable {
        /// The store could not be reached or failed; the lease may still be valid.
        case unavailable
        /// The store no longer has the lease: it expired.
        case leaseNotFound
    }

    public let configuration: Configuration
    public private(set) var state: State = .unleased
    /// When the request in flight was sent, for measuring validity.
    private var requestSentMilliseconds: Int64 = 0

    public init(configuration: Configuration) throws(ConfigurationError) {
        try configuration.validate()
        self.configuration = configuration
    }

    /// True while the node may serve its home sessions at `nowMilliseconds`.
    public func canServe(nowMilliseconds: Int64) -> Bool {
        switch state {
        case .unleased, .granting:
            return false
        case .held(_, let validUntil, _), .renewing(_, let validUntil):
            return nowMilliseconds < validUntil - configuration.safetyMargin.wholeMilliseconds
        }
    }

    /// Returns the action due at `nowMilliseconds`, if any.
    public mutating func tick(nowMilliseconds: Int64) -> Action? {
        switch state {
        case .unleased:
            state = .granting
            requestSentMilliseconds = nowMilliseconds
            return .grant(ttl: configuration.ttl)
        case .held(let id, let validUntil, let renewDue):
            guard nowMilliseconds >= renewDue else { return nil }
            state = .renewing(id, validUntilMilliseconds: validUntil)
            requestSentMilliseconds = nowMilliseconds
            return .renew(id)
        case .granting, .renewing:
            return nil
        }
    }

    /// Records that the store granted `lease` and the lease key is written.
    public mutating func granted(_ lease: Lease) {
        guard case .granting = state else { return }
        hold(lease.id, remaining: lease.ttl)
    }

    /// Records that the store renewed the lease, which now has `remaining` to live.
    public mutating func renewed(remaining: Duration) {
        guard case .renewing(let id, _) = state else { return }
        hold(id, remaining: remaining)
    }

    public mutating func failed(_ failure: Failure, nowMilliseconds: Int64) {
        switch (state, failure) {
        case (.granting, _), (.renewing, .leaseNotFound):
            state = .unleased
        case (.renewing(let id, let validUntil), .unavailable):
            // Keep what is left of the lease and try again soon.
            let retry = nowMilliseconds + configuration.renewInterval.wholeMilliseconds / 3
            state = .held(id, validUntilMilliseconds: validUntil, renewDueMilliseconds: retry)
        case (.unleased, _), (.held, _):
            break
        }
    }

    private mutating func hold(_ id: LeaseID, remaining: Duration) {
        let validUntil = requestSentMilliseconds + remaining.wholeMilliseconds
        let renewDue = requestSentMilliseconds + configuration.renewInterval.wholeMilliseconds
        state = .held(id, validUntilMilliseconds: validUntil, renewDueMilliseconds: renewDue)
    }
}
