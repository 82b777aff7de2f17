import Foundation

extension PolicyTable {
    /// Serialises the table in the policy file format: object keys sorted, two spaces
    /// of indentation per level and a final newline.
    ///
    /// Options equal to their defaults are left out, so changing a row's
    /// `consistency` in the output also moves it to that consistency's default
    /// replication. `PolicyTable.parse` of the output returns an equal table.
    public func jsonData() -> Data {
        let document = PolicyFileEncoder.document(for: self)
        return Data((PolicyFileEncoder.indentedText(of: document) + "\n").utf8)
    }
}

/// Builds the JSON document of a policy file, the inverse of `PolicyFileDecoder`.
enum PolicyFileEncoder {
    static func document(for table: PolicyTable) -> JSONValue {
        .object([
            "version": .integer(Int64(PolicyFileDecoder.supportedVersion)),
            "kinds": .array(table.rows.map(row)),
        ])
    }

    /// Writes `value` with each array element and object member on its own line.
    /// Keys and scalars come from `JSONValue.serializedString()`, so they are escaped
    /// as in compact output, and parsing the text returns `value`.
    static func indentedText(of value: JSONValue, indent: String = "") -> String {
        let innerIndent = indent + "  "
        switch value {
        case .array(let elements) where !elements.isEmpty:
            let lines = elements.map { element in
                innerIndent + indentedText(of: element, indent: innerIndent)
            }
            return "[\n" + lines.joined(separator: ",\n") + "\n" + indent + "]"
        case .object(let fields) where !fields.isEmpty:
            let lines = fields.sorted { $0.key < $1.key }.map { key, fieldValue in
                innerIndent + JSONValue.string(key).serializedString() + ": "
                    + indentedText(of: fieldValue, indent: innerIndent)
            }
            return "{\n" + lines.joined(separator: ",\n") + "\n" + indent + "}"
        default:
            return value.serializedString()
        }
    }

    private static func row(_ row: PolicyRow) -> JSONValue {
        var fields: [String: JSONValue] = [
            "kind": .string(row.kind),
            "readers": .string(row.readers.rawValue),
            "staleReadCost": .string(row.staleReadCost.rawValue),
            "consistency": .string(row.consistency.rawValue),
        ]

        let options = optionFields(for: row)
        if !options.isEmpty {
            fields["options"] = .object(options)
        }
        if !row.notes.isEmpty {
            fields["notes"] = .string(row.notes)
        }
        return .object(fields)
    }

    private static func optionFields(for row: PolicyRow) -> [String: JSONValue] {
        var fields: [String: JSONValue] = [:]
        if row.replication != ReplicationMode.defaultMode(for: row.consistency) {
            fields["replication"] = .string(row.replication.rawValue)
        }
        if let ttlSeconds = row.ttlSeconds {
            fields["ttlSeconds"] = .integer(Int64(ttlSeconds))
        }
        if row.staleReadsAtNeighbour {
            fields["staleReadsAtNeighbour"] = .bool(true)
        }

        var limits: [String: JSONValue] = [:]
        if let maxEntries = row.limits.maxEntries {
            limits["maxEntries"] = .integer(Int64(maxEntries))
        }
        if let maxEntryBytes = row.limits.maxEntryBytes {
            limits["maxEntryBytes"] = .integer(Int64(maxEntryBytes))
        }
        if let maxTotalBytes = row.limits.maxTotalBytes {
            limits["maxTotalBytes"] = .integer(Int64(maxTotalBytes))
        }
        if row.limits.overflow != .reject {
            limits["overflow"] = .string(row.limits.overflow.rawValue)
        }
        if !limits.isEmpty {
            fields["limits"] = .object(limits)
        }
        return fields
    }
}
