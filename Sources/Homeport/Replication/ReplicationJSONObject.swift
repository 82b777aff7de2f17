/// A JSON object being decoded, with the path that names its fields in
/// errors. Every accessor throws `ReplicationError` naming the field.
struct ReplicationJSONObject {
    /// The path of this object in the message; empty for the message itself.
    let path: String
    private let fields: [String: JSONValue]

    /// - Throws: `ReplicationError.invalidValue` when `value` is not an object.
    init(_ value: JSONValue, path: String) throws(ReplicationError) {
        guard case .object(let fields) = value else {
            let name = path.isEmpty ? "the message" : "field \"\(path)\""
            throw ReplicationError(.invalidValue, field: path.isEmpty ? nil : path, "\(name) must be an object, not \(value.typeName)")
        }
        self.path = path
        self.fields = fields
    }

    /// The field names, sorted.
    var keys: [String] { fields.keys.sorted() }

    func path(of key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    /// Rejects any field not in `allowed`, so that a misspelt optional field
    /// is reported instead of silently ignored.
    func rejectUnknownFields(allowed: Set<String>) throws(ReplicationError) {
        guard let unknown = fields.keys.sorted().first(where: { !allowed.contains($0) }) else { return }
        let known = allowed.sorted().map { "\"\($0)\"" }.joined(separator: ", ")
        throw ReplicationError(
            .unknownField, field: path(of: unknown), "unknown field \"\(path(of: unknown))\"; the object has only the fields \(known)")
    }

    func optionalValue(_ key: String) -> JSONValue? {
        fields[key]
    }

    func value(_ key: String) throws(ReplicationError) -> JSONValue {
        guard let value = fields[key] else {
            throw ReplicationError(.missingField, field: path(of: key), "required field \"\(path(of: key))\" is missing")
        }
        return value
    }

    func string(_ key: String) throws(ReplicationError) -> String {
        let value = try value(key)
        guard case .string(let text) = value else { throw wrongType(key, value, expected: "a string") }
        return text
    }

    func optionalString(_ key: String) throws(ReplicationError) -> String? {
        guard fields[key] != nil else { return nil }
        return try string(key)
    }

    func integer(_ key: String) throws(ReplicationError) -> Int64 {
        let value = try value(key)
        guard case .integer(let number) = value else { throw wrongType(key, value, expected: "an integer") }
        return number
    }

    /// Returns a non-negative integer, such as an epoch or a seq.
    func unsignedInteger(_ key: String) throws(ReplicationError) -> UInt64 {
        let number = try integer(key)
        guard number >= 0 else {
            throw invalid(key, "must be 0 or more, but is \(number)")
        }
        return UInt64(number)
    }

    func object(_ key: String) throws(ReplicationError) -> ReplicationJSONObject {
        try ReplicationJSONObject(value(key), path: path(of: key))
    }

    /// Returns the elements of an array field, each with its path (`turns[2]`).
    func array(_ key: String) throws(ReplicationError) -> [(value: JSONValue, path: String)] {
        let value = try value(key)
        guard case .array(let elements) = value else { throw wrongType(key, value, expected: "an array") }
        let base = path(of: key)
        return elements.enumerated().map { (value: $0.element, path: "\(base)[\($0.offset)]") }
    }

    /// Returns the members of an object field keyed by session id, such as
    /// `positions`, each value a non-negative integer.
    func sessionPositions(_ key: String) throws(ReplicationError) -> [SessionID: UInt64] {
        let members = try object(key)
        var positions: [SessionID: UInt64] = [:]
        for name in members.fields.keys.sorted() {
            guard let session = SessionID(name) else {
                throw ReplicationError(
                    .invalidValue, field: members.path(of: name),
                    "key \"\(name)\" of field \"\(members.path)\" is not a session id (\(SessionID.allowedCharactersDescription))")
            }
            positions[session] = try members.unsignedInteger(name)
        }
        return positions
    }

    func invalid(_ key: String, _ problem: String) -> ReplicationError {
        ReplicationError(.invalidValue, field: path(of: key), "field \"\(path(of: key))\" \(problem)")
    }

    private func wrongType(_ key: String, _ value: JSONValue, expected: String) -> ReplicationError {
        invalid(key, "must be \(expected), not \(value.typeName)")
    }
}
