import Foundation

/// Parses a policy file into a `PolicyTable` and rejects everything outside the
/// file format: malformed JSON, unknown or missing fields, wrong types, unknown enum
/// values, non-positive limits, invalid or duplicate kinds and an empty table.
///
/// The rules that relate fields to each other are left to `PolicyTable.validate()`.
enum PolicyFileDecoder {
    static let supportedVersion = 1

    static let topLevelFields = ["version", "kinds"]
    static let rowFields = ["kind", "readers", "staleReadCost", "consistency", "notes", "options"]
    static let optionFields = ["replication", "ttlSeconds", "staleReadsAtNeighbour", "limits"]
    static let limitFields = ["maxEntries", "maxEntryBytes", "maxTotalBytes", "overflow"]

    /// Parses the bytes of a policy file as JSON, ignoring a leading UTF-8 byte order mark.
    ///
    /// - Throws: `PolicyError` with code `malformedJSON`, whose message gives the byte
    ///   offset of the first problem, counted from 0 at the start of the file.
    static func parseJSON(_ data: Data) throws(PolicyError) -> JSONValue {
        // Checked up front because `JSONValue` reports invalid UTF-8 outside strings
        // only as an unexpected character.
        guard String(validating: data, as: UTF8.self) != nil else {
            throw PolicyError(code: .malformedJSON, message: "invalid JSON: the file is not valid UTF-8")
        }

        let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]
        let bytes = Array(data)
        let byteOrderMarkLength = bytes.starts(with: byteOrderMark) ? byteOrderMark.count : 0
        do {
            return try JSONValue.parse(Array(bytes.dropFirst(byteOrderMarkLength)))
        } catch {
            let fileError = JSONParseError(offset: error.offset + byteOrderMarkLength, reason: error.reason)
            throw PolicyError(code: .malformedJSON, message: "invalid JSON: \(fileError)")
        }
    }

    static func decode(_ document: JSONValue) throws(PolicyError) -> PolicyTable {
        guard case .object(let fields) = document else {
            throw PolicyError(
                code: .wrongType,
                message:
                    "the top level has type \(typeName(of: document)); expected an object with fields version and kinds"
            )
        }
        let file = PolicyFieldReader(fields: fields, location: PolicyFieldLocation(), pathPrefix: "")
        try file.rejectUnknownFields(known: topLevelFields)

        let version = try file.requiredInteger("version", expected: "\(supportedVersion)")
        guard version == supportedVersion else {
            throw file.invalidValue(
                "version", valueText: "\(version)", expected: "\(supportedVersion)", adjective: "unsupported")
        }

        let rowValues = try file.requiredArray("kinds", expected: "an array of rows")
        guard !rowValues.isEmpty else {
            throw PolicyError(
                code: .emptyTable,
                message: "field \"kinds\" is empty; add at least one row",
                field: "kinds"
            )
        }

        var rows: [PolicyRow] = []
        var rowIndexByKind: [String: Int] = [:]
        for (index, rowValue) in rowValues.enumerated() {
            let row = try decodeRow(rowValue, at: index)
            if let firstIndex = rowIndexByKind[row.kind] {
                throw PolicyError(
                    code: .duplicateKind,
                    message:
                        "row \(index) (\(row.kind)): duplicate kind \"\(row.kind)\", first defined in row \(firstIndex); rename or remove one of the rows",
                    rowIndex: index,
                    field: "kind"
                )
            }
            rowIndexByKind[row.kind] = index
            rows.append(row)
        }
        return PolicyTable(rows: rows)
    }

    private static func decodeRow(_ value: JSONValue, at index: Int) throws(PolicyError) -> PolicyRow {
        guard case .object(let fields) = value else {
            throw PolicyError(
                code: .wrongType,
                message:
                    "row \(index) has type \(typeName(of: value)); expected an object with fields kind, readers, staleReadCost and consistency",
                rowIndex: index
            )
        }

        // Name the kind in every later message, but only once it is known to be valid.
        var location = PolicyFieldLocation(rowIndex: index)
        if let kind = fields["kind"]?.stringValue, PolicyRow.isValidKind(kind) {
            location.kind = kind
        }
        let row = PolicyFieldReader(fields: fields, location: location, pathPrefix: "")
        try row.rejectUnknownFields(known: rowFields)

        let kind = try row.requiredString("kind", expected: "a name such as \"conversation_buffer\"")
        guard PolicyRow.isValidKind(kind) else {
            throw row.invalidValue(
                "kind",
                valueText: quoted(kind),
                expected: "a lowercase letter followed by at most 63 lowercase letters, digits or underscores"
            )
        }
        let readers: PolicyReaders = try row.requiredEnum("readers")
        let staleReadCost: StaleReadCost = try row.requiredEnum("staleReadCost")
        let consistency: Consistency = try row.requiredEnum("consistency")
        let notes = try row.optionalString("notes") ?? ""

        var decoded = PolicyRow(
            kind: kind,
            readers: readers,
            staleReadCost: staleReadCost,
            consistency: consistency,
            notes: notes
        )
        if let options = try row.optionalObject(
            "options", expected: "an object with fields \(optionFields.joined(separator: ", "))")
        {
            try decodeOptions(options, into: &decoded)
        }
        return decoded
    }

    private static func decodeOptions(_ options: PolicyFieldReader, into row: inout PolicyRow) throws(PolicyError) {
        try options.rejectUnknownFields(known: optionFields)

        if let replication: ReplicationMode = try options.optionalEnum("replication") {
            row.replication = replication
        }
        row.ttlSeconds = try options.optionalPositiveInteger("ttlSeconds")
        row.staleReadsAtNeighbour = try options.optionalBool("staleReadsAtNeighbour") ?? false

        guard
            let limits = try options.optionalObject(
                "limits", expected: "an object with fields \(limitFields.joined(separator: ", "))")
        else {
            return
        }
        try limits.rejectUnknownFields(known: limitFields)
        row.limits = SizeLimits(
            maxEntries: try limits.optionalPositiveInteger("maxEntries"),
            maxEntryBytes: try limits.optionalPositiveInteger("maxEntryBytes"),
            maxTotalBytes: try limits.optionalPositiveInteger("maxTotalBytes"),
            overflow: try limits.optionalEnum("overflow") ?? .reject
        )
    }

    /// Returns the JSON type name of `value` for messages. Integers are "number" too,
    /// because JSON has a single number type.
    static func typeName(of value: JSONValue) -> String {
        switch value {
        case .integer, .number: "number"
        default: value.typeName
        }
    }

    /// Returns `text` as a JSON string literal, so that control characters in a message stay visible.
    static func quoted(_ text: String) -> String {
        JSONValue.string(text).serializedString()
    }

    /// Returns `text` escaped as in a JSON string literal, without the quotes.
    static func escaped(_ text: String) -> String {
        String(quoted(text).dropFirst().dropLast())
    }
}

/// The row, if any, that a field belongs to, as messages show it.
private struct PolicyFieldLocation {
    var rowIndex: Int?
    var kind: String?

    /// `row 3 (usage_quota): `, `row 3: ` or empty outside any row.
    var messagePrefix: String {
        guard let rowIndex else { return "" }
        guard let kind else { return "row \(rowIndex): " }
        return "row \(rowIndex) (\(kind)): "
    }
}

/// Typed, strict access to the fields of one JSON object of a policy file.
private struct PolicyFieldReader {
    let fields: [String: JSONValue]
    let location: PolicyFieldLocation
    /// Path of this object inside the row, such as `options.`, prepended to field names in messages.
    let pathPrefix: String

    func rejectUnknownFields(known: [String]) throws(PolicyError) {
        // `JSONValue` objects do not keep the file order, so of several unknown fields
        // the alphabetically first is reported.
        guard let unknown = fields.keys.sorted().first(where: { !known.contains($0) }) else { return }
        let path = pathPrefix + unknown
        throw PolicyError(
            code: .unknownField,
            message:
                "\(location.messagePrefix)unknown field \"\(path)\"; expected one of \(known.joined(separator: ", "))",
            rowIndex: location.rowIndex,
            field: path
        )
    }

    func requiredString(_ key: String, expected: String) throws(PolicyError) -> String {
        let value = try required(key, expected: expected)
        guard case .string(let text) = value else { throw wrongType(key, value, expected: "a string") }
        return text
    }

    func optionalString(_ key: String) throws(PolicyError) -> String? {
        guard let value = member(key) else { return nil }
        guard case .string(let text) = value else { throw wrongType(key, value, expected: "a string") }
        return text
    }

    func optionalBool(_ key: String) throws(PolicyError) -> Bool? {
        guard let value = member(key) else { return nil }
        guard case .bool(let flag) = value else { throw wrongType(key, value, expected: "true or false") }
        return flag
    }

    func requiredInteger(_ key: String, expected: String) throws(PolicyError) -> Int {
        try integer(key, try required(key, expected: expected), expected: expected)
    }

    func optionalPositiveInteger(_ key: String) throws(PolicyError) -> Int? {
        guard let value = member(key) else { return nil }
        let number = try integer(key, value, expected: "a positive integer")
        guard number > 0 else {
            throw invalidValue(key, valueText: "\(number)", expected: "a positive integer")
        }
        return number
    }

    func requiredArray(_ key: String, expected: String) throws(PolicyError) -> [JSONValue] {
        let value = try required(key, expected: expected)
        guard case .array(let elements) = value else { throw wrongType(key, value, expected: expected) }
        return elements
    }

    func optionalObject(_ key: String, expected: String) throws(PolicyError) -> PolicyFieldReader? {
        guard let value = member(key) else { return nil }
        guard case .object(let nested) = value else { throw wrongType(key, value, expected: expected) }
        return PolicyFieldReader(fields: nested, location: location, pathPrefix: pathPrefix + key + ".")
    }

    func requiredEnum<Value>(_ key: String) throws(PolicyError) -> Value
    where Value: RawRepresentable & CaseIterable, Value.RawValue == String {
        let value = try required(key, expected: Self.oneOf(Value.self))
        return try enumCase(key, value)
    }

    func optionalEnum<Value>(_ key: String) throws(PolicyError) -> Value?
    where Value: RawRepresentable & CaseIterable, Value.RawValue == String {
        guard let value = member(key) else { return nil }
        return try enumCase(key, value) as Value
    }

    func invalidValue(_ key: String, valueText: String, expected: String, adjective: String = "invalid") -> PolicyError {
        let path = pathPrefix + key
        return PolicyError(
            code: .invalidValue,
            message:
                "\(location.messagePrefix)field \"\(path)\" has \(adjective) value \(valueText); expected \(expected)",
            rowIndex: location.rowIndex,
            field: path
        )
    }

    private func member(_ key: String) -> JSONValue? {
        fields[key]
    }

    private func required(_ key: String, expected: String) throws(PolicyError) -> JSONValue {
        guard let value = member(key) else {
            let path = pathPrefix + key
            throw PolicyError(
                code: .missingField,
                message: "\(location.messagePrefix)missing field \"\(path)\"; expected \(expected)",
                rowIndex: location.rowIndex,
                field: path
            )
        }
        return value
    }

    private func integer(_ key: String, _ value: JSONValue, expected: String) throws(PolicyError) -> Int {
        switch value {
        case .integer(let number):
            guard let converted = Int(exactly: number) else {
                throw invalidValue(key, valueText: "\(number)", expected: expected, adjective: "out-of-range")
            }
            return converted
        case .number(let number):
            // `JSONValue` keeps an integer literal as `.number` only outside the Int64
            // range, so a finite value inside it was written with a fraction or an exponent.
            // NOTE: `JSONValue` keeps no source text, so the message shows the Double as
            // Swift prints it, such as 1000.0 for 1e3, 1e+20 for 99999999999999999999 and inf for 1e400.
            let isOutOfRange = !number.isFinite || number.magnitude >= 0x1p63
            throw invalidValue(
                key, valueText: "\(number)", expected: expected, adjective: isOutOfRange ? "out-of-range" : "invalid")
        default:
            throw wrongType(key, value, expected: expected)
        }
    }

    private func enumCase<Value>(_ key: String, _ value: JSONValue) throws(PolicyError) -> Value
    where Value: RawRepresentable & CaseIterable, Value.RawValue == String {
        guard case .string(let text) = value else { throw wrongType(key, value, expected: Self.oneOf(Value.self)) }
        guard let parsed = Value(rawValue: text) else {
            throw invalidValue(
                key, valueText: PolicyFileDecoder.quoted(text), expected: Self.oneOf(Value.self), adjective: "unknown")
        }
        return parsed
    }

    private func wrongType(_ key: String, _ value: JSONValue, expected: String) -> PolicyError {
        let path = pathPrefix + key
        return PolicyError(
            code: .wrongType,
            message:
                "\(location.messagePrefix)field \"\(path)\" has type \(PolicyFileDecoder.typeName(of: value)); expected \(expected)",
            rowIndex: location.rowIndex,
            field: path
        )
    }

    private static func oneOf<Value>(_ type: Value.Type) -> String
    where Value: RawRepresentable & CaseIterable, Value.RawValue == String {
        "one of " + Value.allCases.map(\.rawValue).joined(separator: ", ")
    }
}
