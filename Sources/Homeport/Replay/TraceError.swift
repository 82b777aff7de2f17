/// A failure to load a conversation trace file.
///
/// `description` names the file, the 1-based line and the field where one applies, for
/// example `trace.jsonl, line 17: field "input_length" is negative (-3)`.
public struct TraceError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: String, Sendable, CaseIterable {
        /// No file exists at the path.
        case fileNotFound
        /// The file exists but could not be read, for example because it is a directory.
        case readFailed
        /// The line is empty or is not one well-formed JSON object.
        case malformedLine
        /// A required field is absent.
        case missingField
        /// The object contains a field the trace format does not define.
        case unknownField
        /// The object contains the same field twice.
        case duplicateField
        /// A field has the wrong JSON type, is not an integer, or does not fit in `Int`.
        case invalidValue
        /// A count, a timestamp or a block id is below zero.
        case negativeValue
        /// A timestamp is earlier than the one on the line before, so the file is not in arrival order.
        case timestampOutOfOrder
        /// The file contains no requests.
        case emptyTrace
    }

    public let code: Code
    /// The path as the caller passed it to `ConversationTrace.load(path:)`.
    public let path: String
    /// The 1-based line number, or nil when the failure concerns the whole file.
    public let line: Int?
    /// The JSON field at fault, or nil when no single field is.
    public let field: String?
    /// A one-sentence explanation that names the field and the value at fault, where there is one.
    public let message: String

    public init(code: Code, path: String, line: Int? = nil, field: String? = nil, message: String) {
        self.code = code
        self.path = path
        self.line = line
        self.field = field
        self.message = message
    }

    public var description: String {
        guard let line else {
            return "\(path): \(message)"
        }
        return "\(path), line \(line): \(message)"
    }
}
