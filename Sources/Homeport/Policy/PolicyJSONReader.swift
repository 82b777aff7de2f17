import Foundation

/// A strict JSON reader for policy files (RFC 8259).
///
/// It rejects what lenient parsers accept: trailing commas, duplicate keys in an
/// object, comments, invalid UTF-8, lone surrogates and content after the
/// top-level value. Object members keep their order, so the decoder can report
/// the first unknown field as it appears in the file. Numbers keep their source
/// text, so the decoder decides which of them are integers.
struct PolicyJSONReader {
    enum Value {
        case object([(key: String, value: Value)])
        case array([Value])
        case string(String)
        case number(String)
        case bool(Bool)
        case null
    }

    /// Maximum nesting of arrays and objects. A policy file needs 4 levels.
    static let maximumDepth = 32

    private let bytes: [UInt8]
    private var offset = 0
    private var depth = 0

    private init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// Parses `data` as one JSON document.
    ///
    /// - Throws: `PolicyError` with code `malformedJSON` and a message giving the
    ///   line and column (in bytes, both from 1) of the first problem.
    static func read(_ data: Data) throws(PolicyError) -> Value {
        guard String(validating: data, as: UTF8.self) != nil else {
            throw PolicyError(code: .malformedJSON, message: "invalid JSON: the file is not valid UTF-8")
        }

        var reader = PolicyJSONReader(bytes: Array(data))
        reader.skipByteOrderMark()
        reader.skipWhitespace()
        let value = try reader.readValue()
        reader.skipWhitespace()
        guard reader.offset == reader.bytes.count else {
            throw reader.failure("unexpected content after the top-level value")
        }
        return value
    }

    private mutating func readValue() throws(PolicyError) -> Value {
        guard let byte = peek() else { throw failure("unexpected end of input, expected a value") }

        switch byte {
        case UInt8(ascii: "{"):
            return try readObject()
        case UInt8(ascii: "["):
            return try readArray()
        case UInt8(ascii: "\""):
            return .string(try readString())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .number(try readNumber())
        case UInt8(ascii: "t"):
            try readLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try readLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try readLiteral("null")
            return .null
        default:
            throw failure("unexpected character \(describe(byte)), expected a value")
        }
    }

    private mutating func readObject() throws(PolicyError) -> Value {
        try enterNesting()
        offset += 1
        var members: [(key: String, value: Value)] = []
        var keys: Set<String> = []

        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            offset += 1
            depth -= 1
            return .object(members)
        }

        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw failure("expected a string key in double quotes") }
            let keyOffset = offset
            let key = try readString()
            guard keys.insert(key).inserted else {
                offset = keyOffset
                throw failure("duplicate key \"\(key)\" in one object")
            }

            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw failure("expected ':' after the key \"\(key)\"") }
            offset += 1
            skipWhitespace()
            members.append((key: key, value: try readValue()))

            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","):
                offset += 1
            case UInt8(ascii: "}"):
                offset += 1
                depth -= 1
                return .object(members)
            default:
                throw failure("expected ',' or '}' after an object member")
            }
        }
    }

    private mutating func readArray() throws(PolicyError) -> Value {
        try enterNesting()
        offset += 1
        var elements: [Value] = []

        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            offset += 1
            depth -= 1
            return .array(elements)
        }

        while true {
            skipWhitespace()
            elements.append(try readValue())

            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","):
                offset += 1
            case UInt8(ascii: "]"):
                offset += 1
                depth -= 1
                return .array(elements)
            default:
                throw failure("expected ',' or ']' after an array element")
            }
        }
    }

    private mutating func enterNesting() throws(PolicyError) {
        depth += 1
        guard depth <= Self.maximumDepth else {
            throw failure("nesting deeper than \(Self.maximumDepth) levels")
        }
    }

    private mutating func readString() throws(PolicyError) -> String {
        offset += 1
        var utf8: [UInt8] = []

        while let byte = peek() {
            switch byte {
            case UInt8(ascii: "\""):
                offset += 1
                return String(decoding: utf8, as: UTF8.self)
            case UInt8(ascii: "\\"):
                offset += 1
                try readEscape(into: &utf8)
            case 0x00..<0x20:
                throw failure("control character \(describe(byte)) in a string; escape it")
            default:
                utf8.append(byte)
                offset += 1
            }
        }
        throw failure("unterminated string")
    }

    private mutating func readEscape(into utf8: inout [UInt8]) throws(PolicyError) {
        guard let byte = peek() else { throw failure("unterminated string") }
        offset += 1

        switch byte {
        case UInt8(ascii: "\""): utf8.append(UInt8(ascii: "\""))
        case UInt8(ascii: "\\"): utf8.append(UInt8(ascii: "\\"))
        case UInt8(ascii: "/"): utf8.append(UInt8(ascii: "/"))
        case UInt8(ascii: "b"): utf8.append(0x08)
        case UInt8(ascii: "f"): utf8.append(0x0C)
        case UInt8(ascii: "n"): utf8.append(0x0A)
        case UInt8(ascii: "r"): utf8.append(0x0D)
        case UInt8(ascii: "t"): utf8.append(0x09)
        case UInt8(ascii: "u"):
            let scalar = try readUnicodeEscape()
            utf8.append(contentsOf: String(Character(scalar)).utf8)
        default:
            offset -= 1
            throw failure("invalid escape character \(describe(byte)) after a backslash")
        }
    }

    /// Reads the hex digits after `\u`, and a second `\uXXXX` when the first is a high surrogate.
    private mutating func readUnicodeEscape() throws(PolicyError) -> Unicode.Scalar {
        let first = try readHexQuad()

        switch first {
        case 0xD800...0xDBFF:
            guard peek() == UInt8(ascii: "\\"), peek(at: 1) == UInt8(ascii: "u") else {
                throw failure("high surrogate \\u\(hex(first)) is not followed by a low surrogate")
            }
            offset += 2
            let second = try readHexQuad()
            guard (0xDC00...0xDFFF).contains(second) else {
                throw failure("high surrogate \\u\(hex(first)) is followed by \\u\(hex(second)), not a low surrogate")
            }
            let value = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            // Any value in 0x10000...0x10FFFF is a valid scalar.
            return Unicode.Scalar(value)!
        case 0xDC00...0xDFFF:
            throw failure("low surrogate \\u\(hex(first)) without a high surrogate before it")
        default:
            // Every value below 0x10000 outside the surrogate range is a valid scalar.
            return Unicode.Scalar(first)!
        }
    }

    private mutating func readHexQuad() throws(PolicyError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = peek(), let digit = hexDigitValue(byte) else {
                throw failure("expected 4 hex digits after \\u")
            }
            value = value * 16 + digit
            offset += 1
        }
        return value
    }

    /// Reads `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?` and returns its text.
    private mutating func readNumber() throws(PolicyError) -> String {
        let start = offset

        if peek() == UInt8(ascii: "-") { offset += 1 }
        if peek() == UInt8(ascii: "0") {
            offset += 1
            if let byte = peek(), isDigit(byte) {
                throw failure("leading zero in a number")
            }
        } else {
            try readDigits(after: "'-'")
        }

        if peek() == UInt8(ascii: ".") {
            offset += 1
            try readDigits(after: "the decimal point")
        }

        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            offset += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { offset += 1 }
            try readDigits(after: "the exponent")
        }

        return String(decoding: bytes[start..<offset], as: UTF8.self)
    }

    private mutating func readDigits(after position: String) throws(PolicyError) {
        guard let byte = peek(), isDigit(byte) else { throw failure("expected a digit after \(position)") }
        while let byte = peek(), isDigit(byte) {
            offset += 1
        }
    }

    private mutating func readLiteral(_ literal: String) throws(PolicyError) {
        for expected in literal.utf8 {
            guard peek() == expected else { throw failure("invalid literal, expected \(literal)") }
            offset += 1
        }
    }

    private mutating func skipWhitespace() {
        while let byte = peek(), byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 {
            offset += 1
        }
    }

    private mutating func skipByteOrderMark() {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { offset = 3 }
    }

    private func peek(at distance: Int = 0) -> UInt8? {
        let index = offset + distance
        return index < bytes.count ? bytes[index] : nil
    }

    private func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    private func hexDigitValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    private func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    private func describe(_ byte: UInt8) -> String {
        if byte >= 0x20 && byte < 0x7F {
            return "'\(Character(Unicode.Scalar(byte)))'"
        }
        return "0x\(String(byte, radix: 16, uppercase: true))"
    }

    /// Builds the error for a problem at the current offset.
    private func failure(_ problem: String) -> PolicyError {
        var line = 1
        var lineStart = 0
        for index in 0..<min(offset, bytes.count) where bytes[index] == 0x0A {
            line += 1
            lineStart = index + 1
        }
        let column = offset - lineStart + 1
        return PolicyError(
            code: .malformedJSON,
            message: "invalid JSON at line \(line), column \(column): \(problem)"
        )
    }
}
