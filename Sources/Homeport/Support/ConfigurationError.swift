/// An invalid configuration value, found at start-up: names the field and the fix.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public let field: String
    public let detail: String

    public init(field: String, detail: String) {
        self.field = field
        self.detail = detail
    }

    public var description: String { "invalid configuration \(field): \(detail)" }
}
