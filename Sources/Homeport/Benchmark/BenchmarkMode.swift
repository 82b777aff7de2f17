/// The two designs `homeport bench` compares on the same trace and latency
/// matrix.
public enum BenchmarkMode: String, Sendable, CaseIterable, Comparable {
    /// The policy table as given: sessions live at their home region, and a
    /// request entering elsewhere is forwarded there.
    case defaultPolicy = "default"
    /// Every session kind `linearizable`: each session operation is a
    /// consensus operation that any region can serve.
    case allLinearizable = "all-linearizable"

    public static func < (lhs: BenchmarkMode, rhs: BenchmarkMode) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }

    /// Returns the policy table this mode runs, built from `table`.
    ///
    /// The all-linearizable table moves the four session kinds behind
    /// consensus with no replication. Quotas and billing are linearizable
    /// already. Router weights and rate limits stay eventually-global,
    /// because this build has no consensus-backed service for them, and the
    /// replay's session operations never touch them.
    public func policy(from table: PolicyTable) -> PolicyTable {
        guard self == .allLinearizable else { return table }
        var linearizable = table
        for index in linearizable.rows.indices where SessionStoreLimits.sessionKinds.contains(linearizable.rows[index].kind) {
            linearizable.rows[index].consistency = .linearizable
            linearizable.rows[index].replication = .none
            linearizable.rows[index].staleReadsAtNeighbour = false
        }
        return linearizable
    }
}
