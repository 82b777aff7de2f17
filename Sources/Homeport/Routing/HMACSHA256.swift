import CCrypto
import Foundation

/// HMAC-SHA256 and constant-time comparison from OpenSSL's libcrypto.
public enum HMACSHA256 {
    public static let outputByteCount = 32

    /// Computes the 32-byte HMAC-SHA256 of `message` under `key` (RFC 2104, FIPS 180-4).
    public static func authenticate(_ message: [UInt8], key: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: outputByteCount)
        var outputLength: UInt32 = 0
        let result = key.withUnsafeBytes { keyBuffer in
            message.withUnsafeBytes { messageBuffer in
                output.withUnsafeMutableBytes { outputBuffer in
                    HMAC(
                        EVP_sha256(),
                        keyBuffer.baseAddress, Int32(keyBuffer.count),
                        messageBuffer.baseAddress?.assumingMemoryBound(to: UInt8.self), messageBuffer.count,
                        outputBuffer.baseAddress?.assumingMemoryBound(to: UInt8.self), &outputLength)
                }
            }
        }
        // HMAC() fails only on allocation failure or an unknown digest, neither
        // of which a caller could handle.
        precondition(result != nil && outputLength == UInt32(outputByteCount), "libcrypto HMAC-SHA256 failed")
        return output
    }

    /// Compares two byte strings in time that depends only on their length.
    public static func constantTimeEquals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        guard !lhs.isEmpty else { return true }
        return lhs.withUnsafeBytes { left in
            rhs.withUnsafeBytes { right in
                CRYPTO_memcmp(left.baseAddress, right.baseAddress, left.count) == 0
            }
        }
    }
}

/// Random bytes from OpenSSL's CSPRNG (`RAND_bytes`).
public enum SecureRandom {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String { "libcrypto RAND_bytes failed: the CSPRNG is not seeded" }
    }

    public static func bytes(count: Int) throws(Failure) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: count)
        let status = output.withUnsafeMutableBytes { buffer in
            RAND_bytes(buffer.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(count))
        }
        guard status == 1 else { throw Failure() }
        return output
    }
}

/// Base64url without padding (RFC 4648 section 5), the token's text encoding.
public enum Base64URL {
    public static func encode(_ bytes: [UInt8]) -> String {
        var text = Data(bytes).base64EncodedString()
        text = text.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        while text.hasSuffix("=") { text.removeLast() }
        return text
    }

    /// Decodes strict base64url; returns nil for any other alphabet or padding.
    public static func decode(_ text: Substring) -> [UInt8]? {
        guard isAlphabet(text) else { return nil }
        var standard = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        switch standard.utf8.count % 4 {
        case 0: break
        case 2: standard += "=="
        case 3: standard += "="
        default: return nil
        }
        guard let data = Data(base64Encoded: standard) else { return nil }
        // Unused low bits of the last character must be zero, so that each
        // byte string has exactly one text (a changed token never verifies).
        let bytes = Array(data)
        guard encode(bytes) == text else { return nil }
        return bytes
    }

    /// Returns true when every character of `text` is in the base64url alphabet.
    public static func isAlphabet(_ text: Substring) -> Bool {
        text.utf8.allSatisfy { isAlphabet($0) }
    }

    private static func isAlphabet(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
            true
        default:
            false
        }
    }
}
