/// The client's request id of a reservation: its idempotency key. 1 to 128
/// characters of `A-Z a-z 0-9 . _ : -`, other than `.` and `..`, so it is safe
/// in a URL path segment.
///
/// A request id names one reservation per tenant in the region that first
/// received it.
public struct ReservationID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: String

    /// Returns nil unless `rawValue` has the allowed length and characters.
    public init?(_ rawValue: String) {
        guard Self.isValid(rawValue) else { return nil }
        self.rawValue = rawValue
    }

    public static let allowedCharactersDescription =
        "1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-', other than . and .."

    static func isValid(_ text: String) -> Bool {
        let bytes = text.utf8
        guard (1...128).contains(bytes.count), text != ".", text != ".." else { return false }
        return bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"),
                UInt8(ascii: "-"):
                true
            default:
                false
            }
        }
    }

    public var description: String { rawValue }

    public static func < (lhs: ReservationID, rhs: ReservationID) -> Bool { lhs.rawValue < rhs.rawValue }
}
