/// A replication message (entry, batch or acknowledgement) that could not be
/// decoded. `field` is the path of the value at fault, for example
/// `entries[3].turn.role`, so the sender's bug can be found without a dump.
public struct ReplicationError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// The body is not JSON.
        case malformedJSON = "malformed-json"
        /// A required field is absent.
        case missingField = "missing-field"
        /// The object contains a field the message format does not define.
        case unknownField = "unknown-field"
        /// A field has the wrong JSON type or a value out of its range.
        case invalidValue = "invalid-value"
    }

    public let code: Code
    /// The path of the field at fault, or nil when the whole message is.
    public let field: String?
    /// One sentence naming the field and what is wrong with it.
    public let message: String

    public init(_ code: Code, field: String?, _ message: String) {
        self.code = code
        self.field = field
        self.message = message
    }

    /// Converts an error of the `JSONObjectReader` that decoded the message,
    /// keeping its field path and detail. A wrong JSON type becomes `invalidValue`.
    init(_ error: RequestError) {
        let code: Code
        switch error.code {
        case .malformedJSON:
            code = .malformedJSON
        case .missingField:
            code = .missingField
        case .unknownField:
            code = .unknownField
        case .wrongType, .invalidValue:
            code = .invalidValue
        case .bodyTooLarge, .invalidPathParameter, .invalidQueryParameter, .routeNotFound, .methodNotAllowed:
            // `JSONObjectReader` raises none of these, because they are HTTP routing errors.
            code = .invalidValue
        }
        self.init(code, field: error.field, error.detail)
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
