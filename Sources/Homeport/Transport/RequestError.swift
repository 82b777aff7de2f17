/// A request that cannot be served as sent: bad JSON, wrong types, unknown
/// fields, an oversized body, a bad path or query. Always a 4xx.
public struct RequestError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case malformedJSON = "malformed-json"
        case unknownField = "unknown-field"
        case missingField = "missing-field"
        case wrongType = "wrong-type"
        case invalidValue = "invalid-value"
        case bodyTooLarge = "body-too-large"
        case invalidPathParameter = "invalid-path-parameter"
        case invalidQueryParameter = "invalid-query-parameter"
        case routeNotFound = "route-not-found"
        case methodNotAllowed = "method-not-allowed"
    }

    public let code: Code
    /// The body field, path parameter, query parameter or header at fault.
    public let field: String?
    /// What failed, on which value, and what to send instead.
    public let detail: String
    /// For `methodNotAllowed`, the methods the path accepts (the `Allow` header).
    public let allowedMethods: [String]

    public init(_ code: Code, field: String? = nil, detail: String, allowedMethods: [String] = []) {
        self.code = code
        self.field = field
        self.detail = detail
        self.allowedMethods = allowedMethods
    }

    public var description: String { "\(code.rawValue): \(detail)" }
}

/// Reads the fields of one JSON object strictly: each accessor checks the
/// type and range, and `finish()` rejects any field that was not read.
///
/// Field names in errors carry their path (`refs[2].block`), so a client can
/// find the value at fault in a large body.
public struct JSONObjectReader {
    private let fields: [String: JSONValue]
    private var readKeys: Set<String> = []
    private let pathPrefix: String

    /// - Parameter path: the location of this object in the body, empty for the root.
    public init(_ value: JSONValue, path: String = "") throws(RequestError) {
        guard case .object(let fields) = value else {
            let name = path.isEmpty ? "body" : path
            throw RequestError(
                .wrongType, field: path.isEmpty ? nil : path,
                detail: "\(name) must be a JSON object, got \(value.typeName)")
        }
        self.fields = fields
        self.pathPrefix = path.isEmpty ? "" : path + "."
    }

    /// Parses `body` and returns a reader of its top-level object.
    public static func parseBody(_ body: [UInt8]) throws(RequestError) -> JSONObjectReader {
        guard !body.isEmpty else {
            throw RequestError(.malformedJSON, detail: "the request body is empty; send a JSON object")
        }
        let value: JSONValue
        do {
            value = try JSONValue.parse(body)
        } catch {
            throw RequestError(.malformedJSON, detail: "the request body is not valid JSON: \(error.description)")
        }
        return try JSONObjectReader(value)
    }

    /// The field names, sorted, for objects keyed by data such as session ids.
    public var keys: [String] { fields.keys.sorted() }

    /// Returns the path of `key` as errors name it, such as `refs[2].block`.
    public func path(of key: String) -> String { name(key) }

    private func name(_ key: String) -> String { pathPrefix + key }

    private mutating func take(_ key: String) -> JSONValue? {
        readKeys.insert(key)
        guard let value = fields[key], value != .null else { return nil }
        return value
    }

    private func missing(_ key: String, _ expected: String) -> RequestError {
        RequestError(.missingField, field: name(key), detail: "field \"\(name(key))\" is required: send \(expected)")
    }

    private func wrongType(_ key: String, _ value: JSONValue, _ expected: String) -> RequestError {
        RequestError(
            .wrongType, field: name(key),
            detail: "field \"\(name(key))\" must be \(expected), got \(value.typeName)")
    }

    public mutating func optionalString(_ key: String, maximumBytes: Int) throws(RequestError) -> String? {
        guard let value = take(key) else { return nil }
        guard case .string(let text) = value else { throw wrongType(key, value, "a string") }
        guard text.utf8.count <= maximumBytes else {
            throw RequestError(
                .invalidValue, field: name(key),
                detail: "field \"\(name(key))\" is \(text.utf8.count) bytes; the maximum is \(maximumBytes)")
        }
        return text
    }

    public mutating func string(_ key: String, maximumBytes: Int) throws(RequestError) -> String {
        guard let text = try optionalString(key, maximumBytes: maximumBytes) else {
            throw missing(key, "a string")
        }
        return text
    }

    public mutating func optionalBool(_ key: String) throws(RequestError) -> Bool? {
        guard let value = take(key) else { return nil }
        guard case .bool(let flag) = value else { throw wrongType(key, value, "true or false") }
        return flag
    }

    public mutating func optionalInteger(_ key: String, in range: ClosedRange<Int64>) throws(RequestError) -> Int64? {
        guard let value = take(key) else { return nil }
        let number: Int64
        switch value {
        case .integer(let integer):
            number = integer
        case .number(let double):
            throw RequestError(
                .invalidValue, field: name(key),
                detail: "field \"\(name(key))\" must be a whole number from \(range.lowerBound) to \(range.upperBound), got \(double)")
        default:
            throw wrongType(key, value, "an integer")
        }
        guard range.contains(number) else {
            throw RequestError(
                .invalidValue, field: name(key),
                detail: "field \"\(name(key))\" must be from \(range.lowerBound) to \(range.upperBound), got \(number)")
        }
        return number
    }

    public mutating func integer(_ key: String, in range: ClosedRange<Int64>) throws(RequestError) -> Int64 {
        guard let number = try optionalInteger(key, in: range) else {
            throw missing(key, "an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    /// Reads a non-negative integer, such as an epoch or a seq.
    public mutating func unsignedInteger(_ key: String) throws(RequestError) -> UInt64 {
        UInt64(try integer(key, in: 0...Int64.max))
    }

    public mutating func optionalArray(_ key: String, maximumCount: Int) throws(RequestError) -> [JSONValue]? {
        guard let value = take(key) else { return nil }
        guard case .array(let elements) = value else { throw wrongType(key, value, "an array") }
        guard elements.count <= maximumCount else {
            throw RequestError(
                .invalidValue, field: name(key),
                detail: "field \"\(name(key))\" has \(elements.count) elements; the maximum is \(maximumCount)")
        }
        return elements
    }

    public mutating func array(_ key: String, maximumCount: Int) throws(RequestError) -> [JSONValue] {
        guard let elements = try optionalArray(key, maximumCount: maximumCount) else {
            throw missing(key, "an array")
        }
        return elements
    }

    /// Any JSON value except null, for free-form fields (ledger arguments, session values).
    public mutating func optionalValue(_ key: String) -> JSONValue? {
        take(key)
    }

    /// Any JSON value, null included; only an absent field is missing.
    public mutating func value(_ key: String) throws(RequestError) -> JSONValue {
        readKeys.insert(key)
        guard let value = fields[key] else { throw missing(key, "a JSON value") }
        return value
    }

    /// Reads any JSON value, null included, and returns nil only when the field is absent.
    public mutating func valueIfPresent(_ key: String) -> JSONValue? {
        readKeys.insert(key)
        return fields[key]
    }

    /// Reads a nested object, whose errors name its fields by their full path.
    public mutating func object(_ key: String) throws(RequestError) -> JSONObjectReader {
        try JSONObjectReader(value(key), path: name(key))
    }

    /// Returns an `invalidValue` error naming the field, for a check the caller makes.
    /// `problem` continues the sentence `field "key" …`.
    public func invalidValue(_ key: String, _ problem: String) -> RequestError {
        RequestError(.invalidValue, field: name(key), detail: "field \"\(name(key))\" \(problem)")
    }

    /// A JSON object whose values are all strings (turn metadata), with limits.
    public mutating func optionalStringMap(
        _ key: String, maximumEntries: Int, maximumBytes: Int
    ) throws(RequestError) -> [String: String]? {
        guard let value = take(key) else { return nil }
        guard case .object(let entries) = value else { throw wrongType(key, value, "an object of strings") }
        guard entries.count <= maximumEntries else {
            throw RequestError(
                .invalidValue, field: name(key),
                detail: "field \"\(name(key))\" has \(entries.count) entries; the maximum is \(maximumEntries)")
        }
        var result: [String: String] = [:]
        var bytes = 0
        for (entryKey, entryValue) in entries {
            guard case .string(let text) = entryValue else {
                throw RequestError(
                    .wrongType, field: name(key) + "." + entryKey,
                    detail: "field \"\(name(key)).\(entryKey)\" must be a string, got \(entryValue.typeName)")
            }
            bytes += entryKey.utf8.count + text.utf8.count
            result[entryKey] = text
        }
        guard bytes <= maximumBytes else {
            throw RequestError(
                .invalidValue, field: name(key),
                detail: "field \"\(name(key))\" holds \(bytes) bytes; the maximum is \(maximumBytes)")
        }
        return result
    }

    public mutating func stringMap(
        _ key: String, maximumEntries: Int, maximumBytes: Int
    ) throws(RequestError) -> [String: String] {
        guard let map = try optionalStringMap(key, maximumEntries: maximumEntries, maximumBytes: maximumBytes) else {
            throw missing(key, "an object of strings")
        }
        return map
    }

    /// Rejects every field that no accessor read.
    public func finish() throws(RequestError) {
        let unknown = fields.keys.filter { !readKeys.contains($0) }.sorted()
        guard let first = unknown.first else { return }
        let expected = readKeys.sorted().joined(separator: ", ")
        throw RequestError(
            .unknownField, field: name(first),
            detail: "unknown field \"\(name(first))\"; the accepted fields are: \(expected)")
    }
}
