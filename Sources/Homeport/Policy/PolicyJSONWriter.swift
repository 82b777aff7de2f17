import Foundation

extension PolicyTable {
    /// Serialises the table in the policy file format, indented by two spaces.
    ///
    /// Options equal to their defaults are left out, so changing a row's
    /// `consistency` in the output also moves it to that consistency's default
    /// replication. `PolicyTable.parse` of the output returns an equal table.
    public func jsonData() -> Data {
        Data(PolicyJSONWriter.document(for: self).utf8)
    }
}

/// Writes policy files with a fixed field order: `kind`, `readers`, `staleReadCost`,
/// `consistency`, `options`, `notes`.
enum PolicyJSONWriter {
    static func document(for table: PolicyTable) -> String {
        let rows = table.rows.map { row(for: $0, indent: "    ") }
        let members = [
            ("version", "\(PolicyFileDecoder.supportedVersion)"),
            ("kinds", array(rows, indent: "  ")),
        ]
        return object(members, indent: "") + "\n"
    }

    /// Returns `text` escaped for use inside a JSON string literal.
    static func escaped(_ text: String) -> String {
        var output = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": output += "\\\""
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\r": output += "\\r"
            case "\t": output += "\\t"
            case "\u{08}": output += "\\b"
            case "\u{0C}": output += "\\f"
            case "\u{00}"..."\u{1F}":
                let digits = String(scalar.value, radix: 16, uppercase: true)
                output += "\\u" + String(repeating: "0", count: 4 - digits.count) + digits
            default:
                output.unicodeScalars.append(scalar)
            }
        }
        return output
    }

    private static func row(for row: PolicyRow, indent: String) -> String {
        let memberIndent = indent + "  "
        var members = [
            ("kind", string(row.kind)),
            ("readers", string(row.readers.rawValue)),
            ("staleReadCost", string(row.staleReadCost.rawValue)),
            ("consistency", string(row.consistency.rawValue)),
        ]

        let options = optionMembers(for: row, indent: memberIndent + "  ")
        if !options.isEmpty {
            members.append(("options", object(options, indent: memberIndent)))
        }
        if !row.notes.isEmpty {
            members.append(("notes", string(row.notes)))
        }
        return object(members, indent: indent)
    }

    private static func optionMembers(for row: PolicyRow, indent: String) -> [(String, String)] {
        var members: [(String, String)] = []
        if row.replication != ReplicationMode.defaultMode(for: row.consistency) {
            members.append(("replication", string(row.replication.rawValue)))
        }
        if let ttlSeconds = row.ttlSeconds {
            members.append(("ttlSeconds", "\(ttlSeconds)"))
        }
        if row.staleReadsAtNeighbour {
            members.append(("staleReadsAtNeighbour", "true"))
        }

        var limits: [(String, String)] = []
        if let maxEntries = row.limits.maxEntries {
            limits.append(("maxEntries", "\(maxEntries)"))
        }
        if let maxEntryBytes = row.limits.maxEntryBytes {
            limits.append(("maxEntryBytes", "\(maxEntryBytes)"))
        }
        if let maxTotalBytes = row.limits.maxTotalBytes {
            limits.append(("maxTotalBytes", "\(maxTotalBytes)"))
        }
        if row.limits.overflow != .reject {
            limits.append(("overflow", string(row.limits.overflow.rawValue)))
        }
        if !limits.isEmpty {
            members.append(("limits", object(limits, indent: indent)))
        }
        return members
    }

    /// Writes an object whose opening brace sits on a line indented by `indent`.
    /// Member values must already be serialised for the next indentation level.
    private static func object(_ members: [(String, String)], indent: String) -> String {
        guard !members.isEmpty else { return "{}" }
        let memberIndent = indent + "  "
        let lines = members.map { key, value in "\(memberIndent)\(string(key)): \(value)" }
        return "{\n" + lines.joined(separator: ",\n") + "\n\(indent)}"
    }

    private static func array(_ elements: [String], indent: String) -> String {
        guard !elements.isEmpty else { return "[]" }
        let elementIndent = indent + "  "
        let lines = elements.map { elementIndent + $0 }
        return "[\n" + lines.joined(separator: ",\n") + "\n\(indent)]"
    }

    private static func string(_ text: String) -> String {
        "\"" + escaped(text) + "\""
    }
}
