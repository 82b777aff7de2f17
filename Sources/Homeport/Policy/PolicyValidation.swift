/// A rule of the policy table that a row can break.
public enum PolicyRule: String, Sendable, CaseIterable {
    /// A kind whose stale reads are incorrect must be linearizable.
    case incorrectRequiresLinearizable
    /// A kind read across sessions cannot be session-local, because session-local
    /// state is stored only in the writing session's home region.
    case crossSessionForbidsSessionLocal
    /// A linearizable kind whose stale reads are only annoying or invisible pays for
    /// consensus it does not need. This is a warning.
    case linearizableBelowIncorrect
    /// The replication mode does not fit the consistency: `neighbour` and `none` for
    /// session-local, `all-regions` for eventually-global, `none` for linearizable.
    case replicationModeMismatch
    /// `staleReadsAtNeighbour` is set on a kind that is not session-local or whose
    /// stale reads are not invisible.
    case staleReadsAtNeighbourRequiresInvisible
    /// The kind is not a valid name. `PolicyTable.parse` rejects this, so only tables
    /// built in code can break it.
    case invalidKind
    /// Two rows have the same kind. Only tables built in code can break this rule.
    case duplicateKind
    /// `ttlSeconds` or a size limit is zero or negative. Only tables built in code
    /// can break this rule.
    case nonPositiveOption
}

/// A rule that one row of a policy table breaks.
public struct PolicyDiagnostic: Sendable, Equatable, CustomStringConvertible {
    public enum Severity: String, Sendable {
        /// The table must not be used.
        case error
        /// The table works but costs more than it needs to.
        case warning
    }

    public var severity: Severity
    /// Position of the row in `PolicyTable.rows`, counted from 0.
    public var rowIndex: Int
    public var kind: String
    public var rule: PolicyRule
    /// Description of the problem that names the row, the values and the rule, and says how to fix it.
    public var message: String

    public init(severity: Severity, rowIndex: Int, kind: String, rule: PolicyRule, message: String) {
        self.severity = severity
        self.rowIndex = rowIndex
        self.kind = kind
        self.rule = rule
        self.message = message
    }

    /// The message prefixed with `error: ` or `warning: `.
    public var description: String { "\(severity.rawValue): \(message)" }
}

extension PolicyTable {
    /// Checks every row against the rules of `PolicyRule` and returns what they break,
    /// in row order. An empty result means the table can be used as it is.
    ///
    /// A table built in code with no rows gets no diagnostics, because there is no
    /// row to name. `parse` rejects an empty table.
    public func validate() -> [PolicyDiagnostic] {
        var diagnostics: [PolicyDiagnostic] = []
        var firstIndexByKind: [String: Int] = [:]

        for (index, row) in rows.enumerated() {
            var checker = PolicyRowChecker(row: row, index: index)

            if let firstIndex = firstIndexByKind[row.kind] {
                checker.report(
                    .duplicateKind,
                    "kind \"\(row.kind)\" is already defined in row \(firstIndex); rename or remove one of the rows"
                )
            } else {
                firstIndexByKind[row.kind] = index
            }

            checker.checkAll()
            diagnostics += checker.diagnostics
        }
        return diagnostics
    }
}

/// Collects the diagnostics of one row.
private struct PolicyRowChecker {
    let row: PolicyRow
    let index: Int
    private(set) var diagnostics: [PolicyDiagnostic] = []

    init(row: PolicyRow, index: Int) {
        self.row = row
        self.index = index
    }

    mutating func checkAll() {
        checkKind()
        checkPositiveOptions()
        checkIncorrectRequiresLinearizable()
        checkCrossSessionForbidsSessionLocal()
        checkLinearizableBelowIncorrect()
        checkReplicationMode()
        checkStaleReadsAtNeighbour()
    }

    mutating func report(_ rule: PolicyRule, _ problem: String, severity: PolicyDiagnostic.Severity = .error) {
        diagnostics.append(
            PolicyDiagnostic(
                severity: severity,
                rowIndex: index,
                kind: row.kind,
                rule: rule,
                message: "row \(index) (\(PolicyFileDecoder.escaped(row.kind))): \(problem) (rule \(rule.rawValue))"
            )
        )
    }

    private mutating func checkKind() {
        guard !PolicyRow.isValidKind(row.kind) else { return }
        report(
            .invalidKind,
            "kind \"\(PolicyFileDecoder.escaped(row.kind))\" is invalid; use a lowercase letter followed by at most 63 lowercase letters, digits or underscores"
        )
    }

    private mutating func checkPositiveOptions() {
        let options: [(name: String, value: Int?)] = [
            ("ttlSeconds", row.ttlSeconds),
            ("limits.maxEntries", row.limits.maxEntries),
            ("limits.maxEntryBytes", row.limits.maxEntryBytes),
            ("limits.maxTotalBytes", row.limits.maxTotalBytes),
        ]
        for option in options {
            guard let value = option.value, value <= 0 else { continue }
            report(.nonPositiveOption, "\(option.name) is \(value); use a positive value or remove the option")
        }
    }

    private mutating func checkIncorrectRequiresLinearizable() {
        guard row.staleReadCost == .incorrect, row.consistency != .linearizable else { return }
        report(
            .incorrectRequiresLinearizable,
            "staleReadCost incorrect requires consistency linearizable, but the row has \(row.consistency.rawValue); set consistency to linearizable"
        )
    }

    private mutating func checkCrossSessionForbidsSessionLocal() {
        guard row.readers == .crossSession, row.consistency == .sessionLocal else { return }
        report(
            .crossSessionForbidsSessionLocal,
            "readers cross-session forbids consistency session-local, because other sessions cannot read a session's home-region state; use eventually-global or linearizable"
        )
    }

    private mutating func checkLinearizableBelowIncorrect() {
        guard row.consistency == .linearizable, row.staleReadCost < .incorrect else { return }

        // Suggest the cheapest consistency that the other rules still allow.
        let cheaper: Consistency = row.readers == .singleSession ? .sessionLocal : .eventuallyGlobal
        report(
            .linearizableBelowIncorrect,
            "consistency linearizable pays a consensus round trip on every write, but a stale read is only \(row.staleReadCost.rawValue); consider \(cheaper.rawValue)",
            severity: .warning
        )
    }

    private mutating func checkReplicationMode() {
        let allowed: [ReplicationMode]
        switch row.consistency {
        case .sessionLocal: allowed = [.neighbour, .none]
        case .eventuallyGlobal: allowed = [.allRegions]
        case .linearizable: allowed = [.none]
        }
        guard !allowed.contains(row.replication) else { return }

        let defaultMode = ReplicationMode.defaultMode(for: row.consistency)
        report(
            .replicationModeMismatch,
            "replication \(row.replication.rawValue) is invalid with consistency \(row.consistency.rawValue), which allows \(allowed.map(\.rawValue).joined(separator: " or ")); remove options.replication to get the default \(defaultMode.rawValue)"
        )
    }

    private mutating func checkStaleReadsAtNeighbour() {
        guard row.staleReadsAtNeighbour else { return }

        var conflicts: [String] = []
        if row.staleReadCost != .invisible {
            conflicts.append("staleReadCost is \(row.staleReadCost.rawValue)")
        }
        if row.consistency != .sessionLocal {
            conflicts.append("consistency is \(row.consistency.rawValue)")
        }
        guard !conflicts.isEmpty else { return }

        report(
            .staleReadsAtNeighbourRequiresInvisible,
            "staleReadsAtNeighbour requires staleReadCost invisible and consistency session-local, but \(conflicts.joined(separator: " and ")); set it to false"
        )
    }
}
