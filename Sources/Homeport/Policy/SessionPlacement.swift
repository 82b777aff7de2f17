/// Where the four session-local kinds live, as the policy table places them.
/// One session store contains all four, so their rows must agree.
public enum SessionPlacement: String, Sendable, Equatable {
    /// At the session's home region, replicated lazily to its neighbour: the
    /// rows are `session-local`, and a request entering elsewhere is
    /// forwarded to the home.
    case homeRegion = "home-region"
    /// In the linearizable store that all regions share, so every operation
    /// waits for consensus and any region serves any session: the rows are
    /// `linearizable`. This is the "every session behind consensus" baseline
    /// that `homeport bench` compares the default with.
    case consensus

    /// Reads the placement from the rows of `SessionStoreLimits.sessionKinds`.
    ///
    /// - Throws: `ConfigurationError` naming the first row that is missing,
    ///   `eventually-global`, or differs from the others.
    public init(policy: PolicyTable) throws(ConfigurationError) {
        var placements: [(kind: String, placement: SessionPlacement)] = []
        for kind in SessionStoreLimits.sessionKinds {
            guard let row = policy.row(for: kind) else {
                throw ConfigurationError(
                    field: "policy.\(kind)", detail: "the policy table has no row for \(kind); add one (see `homeport policy check`)")
            }
            switch row.consistency {
            case .sessionLocal: placements.append((kind, .homeRegion))
            case .linearizable: placements.append((kind, .consensus))
            case .eventuallyGlobal:
                throw ConfigurationError(
                    field: "policy.\(kind).consistency",
                    detail: "\(kind) is eventually-global, but a session's state is either session-local or linearizable; pick one")
            }
        }

        let first = placements[0]
        if let other = placements.first(where: { $0.placement != first.placement }) {
            throw ConfigurationError(
                field: "policy.\(other.kind).consistency",
                detail:
                    "\(other.kind) and \(first.kind) must have the same consistency, because one store holds a session's kinds; set both to session-local or both to linearizable"
            )
        }
        self = first.placement
    }
}

extension PolicyTable {
    /// The kinds served by a service of their own, and the one consistency
    /// each service runs.
    static let servedConsistencies: [(kind: String, consistency: Consistency)] = [
        ("model_router_weights", .eventuallyGlobal), ("rate_limit", .eventuallyGlobal),
        ("usage_quota", .linearizable), ("billing_counter", .linearizable),
    ]

    /// Checks that this build can serve the table as written: the session
    /// kinds share one `SessionPlacement`, and router weights, rate limits,
    /// quotas and billing keep the consistency their services implement. A
    /// kind the table leaves out is not checked here.
    ///
    /// - Throws: `ConfigurationError` naming the first row this build cannot serve.
    public func checkServable() throws(ConfigurationError) {
        _ = try SessionPlacement(policy: self)
        for (kind, consistency) in Self.servedConsistencies {
            guard let row = row(for: kind), row.consistency != consistency else { continue }
            // NOTE: router weights and rate limits have no consensus-backed
            // service yet, and quotas and billing no lazily replicated one.
            throw ConfigurationError(
                field: "policy.\(kind).consistency",
                detail: "\(kind) is \(row.consistency.rawValue), but this build serves it only as \(consistency.rawValue); set it back"
            )
        }
    }
}
