/// A policy file that cannot be read or does not have the shape of a policy table.
///
/// Rule violations in a well-formed table are not errors of this type.
/// `PolicyTable.validate()` reports them as `PolicyDiagnostic` values.
public struct PolicyError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        case malformedJSON
        case unknownField
        case missingField
        case wrongType
        case invalidValue
        case duplicateKind
        case emptyTable
        case unreadableFile
    }

    public var code: Code
    /// Description of the failure that names the row, the field and the value, and says how to fix it.
    public var message: String
    /// Position of the row at fault in the `kinds` array, counted from 0, or `nil`
    /// when the error is outside any row.
    public var rowIndex: Int?
    /// Path of the field at fault, such as `options.limits.overflow`, or `nil`
    /// when no single field is at fault.
    public var field: String?

    public init(code: Code, message: String, rowIndex: Int? = nil, field: String? = nil) {
        self.code = code
        self.message = message
        self.rowIndex = rowIndex
        self.field = field
    }

    public var description: String { message }
}
