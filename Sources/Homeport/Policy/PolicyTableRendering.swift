extension PolicyTable {
    /// Renders the report of `homeport policy check` as plain text ending in a newline.
    ///
    /// The first part is a table with columns kind, readers, stale read, consistency
    /// and path, aligned with spaces. Rows are sorted by consistency, from
    /// session-local to linearizable, and by kind within one consistency. The path
    /// column names the store that holds the kind and how it is replicated. The second
    /// part has one line per diagnostic of `validate()`, errors before warnings,
    /// followed by a count such as `1 error, 2 warnings` or `no errors, no warnings`.
    ///
    /// - Parameters:
    ///   - storeName: name of the per-region fast store, such as `memory store` or `Redis`.
    ///   - linearizableStoreName: name of the store shared by all regions.
    public func render(storeName: String, linearizableStoreName: String) -> String {
        let sortedRows = rows.sorted { ($0.consistency, $0.kind) < ($1.consistency, $1.kind) }
        let header = ["kind", "readers", "stale read", "consistency", "path"]
        let cells = sortedRows.map { row in
            [
                row.kind,
                row.readers.rawValue,
                row.staleReadCost.rawValue,
                row.consistency.rawValue,
                Self.path(of: row, storeName: storeName, linearizableStoreName: linearizableStoreName),
            ]
        }
        var lines = Self.alignedLines([header] + cells)
        lines.append("")

        let diagnostics = validate()
        let errors = diagnostics.filter { $0.severity == .error }
        let warnings = diagnostics.filter { $0.severity == .warning }
        lines += (errors + warnings).map(\.description)
        lines.append(Self.summary(errorCount: errors.count, warningCount: warnings.count))

        return lines.joined(separator: "\n") + "\n"
    }

    private static func path(of row: PolicyRow, storeName: String, linearizableStoreName: String) -> String {
        // `validate()` reports the pairs marked invalid. Their path still describes what they would do.
        switch (row.consistency, row.replication) {
        case (.sessionLocal, .neighbour):
            return "home region's \(storeName), replicated lazily to the neighbour"
        case (.sessionLocal, .none):
            return "home region's \(storeName), not replicated"
        case (.sessionLocal, .allRegions):
            return "home region's \(storeName), pushed to all regions (invalid)"
        case (.eventuallyGlobal, .allRegions):
            return "every region's \(storeName), pushed to all regions, HLC last-writer-wins, anti-entropy"
        case (.eventuallyGlobal, .neighbour):
            return "each region's \(storeName), copied only to the neighbour (invalid)"
        case (.eventuallyGlobal, .none):
            return "each region's \(storeName), not replicated (invalid)"
        case (.linearizable, .none), (.linearizable, .neighbour), (.linearizable, .allRegions):
            return "\(linearizableStoreName) (consensus on every write)"
        }
    }

    /// Pads every column but the last to its widest cell, with two spaces between columns.
    private static func alignedLines(_ table: [[String]]) -> [String] {
        let columnCount = table.map(\.count).max() ?? 0
        let widths = (0..<columnCount).map { column in
            table.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0
        }

        return table.map { cells in
            cells.enumerated().map { column, cell in
                let isLast = column == cells.count - 1
                return isLast ? cell : cell.padding(toWidth: widths[column])
            }
            .joined(separator: "  ")
        }
    }

    private static func summary(errorCount: Int, warningCount: Int) -> String {
        if errorCount == 0 && warningCount == 0 {
            return "no errors, no warnings"
        }
        let errors = errorCount == 1 ? "1 error" : "\(errorCount) errors"
        let warnings = warningCount == 1 ? "1 warning" : "\(warningCount) warnings"
        return "\(errors), \(warnings)"
    }
}

extension String {
    fileprivate func padding(toWidth width: Int) -> String {
        self + String(repeating: " ", count: max(0, width - count))
    }
}
