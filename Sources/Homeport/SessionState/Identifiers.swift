/// A session's id: 1 to 64 characters of `A-Z a-z 0-9 - _`, so it is safe in
/// a URL path segment and a store key. New ids carry 128 random bits.
public struct SessionID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: String

    /// Returns nil unless `rawValue` has the allowed length and characters.
    public init?(_ rawValue: String) {
        guard Self.isValid(rawValue) else { return nil }
        self.rawValue = rawValue
    }

    /// A fresh id from the CSPRNG: 16 random bytes in base64url (22 characters).
    public static func random() throws(SecureRandom.Failure) -> SessionID {
        let bytes = try SecureRandom.bytes(count: 16)
        return SessionID(Base64URL.encode(bytes))!
    }

    public static let allowedCharactersDescription = "1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'"

    static func isValid(_ text: String) -> Bool {
        let utf8 = text.utf8
        guard (1...64).contains(utf8.count) else { return false }
        return utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                true
            default:
                false
            }
        }
    }

    public var description: String { rawValue }

    public static func < (lhs: SessionID, rhs: SessionID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A tenant's id: 1 to 64 characters of lowercase letters, digits, '-', '_'
/// and '.', starting with a letter or digit.
public struct TenantID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String

    public init?(_ rawValue: String) {
        let utf8 = Array(rawValue.utf8)
        guard (1...64).contains(utf8.count) else { return nil }
        for (index, byte) in utf8.enumerated() {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                continue
            case UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
                if index == 0 { return nil }
            default:
                return nil
            }
        }
        self.rawValue = rawValue
    }

    public static let allowedCharactersDescription =
        "1 to 64 characters of a-z, 0-9, '-', '_' and '.', starting with a letter or digit"

    public var description: String { rawValue }
}
