/// The four fields of one trace line, checked to be present and non-negative.
struct TraceLineFields {
    var timestamp: Int
    var inputLength: Int
    var outputLength: Int
    var hashIds: [Int]
}

/// A bad trace line, before the loader adds the path and line number.
struct TraceLineFailure: Error {
    var code: TraceError.Code
    var field: String?
    var message: String
}

/// A strict parser for one trace line: a JSON object with three integer fields and an
/// array of block ids.
///
/// It reads the bytes directly instead of decoding each line with `JSONDecoder`, and it
/// names the field of each failure. Per-line `JSONDecoder` took over ten times as long
/// on the 12,031-line Mooncake trace in a release build (Swift 6.3 on x86-64 Linux).
/// The parser accepts any JSON whitespace, any field order and escapes in field names.
/// Where the format expects a non-negative integer, it rejects every other value.
struct TraceLineParser {
    private static let fieldNames = ["timestamp", "input_length", "output_length", "hash_ids"]

    private let bytes: UnsafeBufferPointer<UInt8>
    private var position = 0

    private init(bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    /// Parses one line, given without its newline.
    static func parse(_ line: UnsafeBufferPointer<UInt8>) throws(TraceLineFailure) -> TraceLineFields {
        var parser = TraceLineParser(bytes: line)
        return try parser.parseObject()
    }

    private mutating func parseObject() throws(TraceLineFailure) -> TraceLineFields {
        var timestamp: Int?
        var inputLength: Int?
        var outputLength: Int?
        var hashIds: [Int]?

        skipWhitespace()
        guard position < bytes.count else {
            throw malformed("the line is empty, but every line must contain one request object")
        }
        try expect(UInt8(ascii: "{"), "the line does not start with a JSON object")
        skipWhitespace()

        if peek() == UInt8(ascii: "}") {
            position += 1
        } else {
            while true {
                try expect(UInt8(ascii: "\""), "expected a field name in double quotes")
                let name = try parseStringBody()
                skipWhitespace()
                try expect(UInt8(ascii: ":"), "expected ':' after field name \"\(name)\"")
                skipWhitespace()

                switch name {
                case "timestamp":
                    try rejectDuplicate(name, alreadySet: timestamp != nil)
                    timestamp = try parseNonNegativeInteger(field: name)
                case "input_length":
                    try rejectDuplicate(name, alreadySet: inputLength != nil)
                    inputLength = try parseNonNegativeInteger(field: name)
                case "output_length":
                    try rejectDuplicate(name, alreadySet: outputLength != nil)
                    outputLength = try parseNonNegativeInteger(field: name)
                case "hash_ids":
                    try rejectDuplicate(name, alreadySet: hashIds != nil)
                    hashIds = try parseBlockIds(field: name)
                default:
                    let known = Self.fieldNames.map { "\"\($0)\"" }.joined(separator: ", ")
                    throw TraceLineFailure(
                        code: .unknownField,
                        field: name,
                        message: "unknown field \"\(name)\". A trace line contains only the fields \(known)"
                    )
                }

                skipWhitespace()
                if peek() == UInt8(ascii: ",") {
                    position += 1
                    skipWhitespace()
                    continue
                }
                try expect(UInt8(ascii: "}"), "expected ',' or '}' after field \"\(name)\"")
                break
            }
        }

        skipWhitespace()
        guard position == bytes.count else {
            throw malformed("unexpected text after the JSON object at column \(position + 1)")
        }

        guard let timestamp else { throw missing("timestamp") }
        guard let inputLength else { throw missing("input_length") }
        guard let outputLength else { throw missing("output_length") }
        guard let hashIds else { throw missing("hash_ids") }
        return TraceLineFields(timestamp: timestamp, inputLength: inputLength, outputLength: outputLength, hashIds: hashIds)
    }

    private mutating func parseBlockIds(field: String) throws(TraceLineFailure) -> [Int] {
        guard peek() == UInt8(ascii: "[") else {
            throw wrongType(field: field, element: nil, expected: "an array of integers")
        }
        position += 1
        skipWhitespace()

        var blockIds: [Int] = []
        if peek() == UInt8(ascii: "]") {
            position += 1
            return blockIds
        }
        while true {
            blockIds.append(try parseNonNegativeInteger(field: field, element: blockIds.count))
            skipWhitespace()
            if peek() == UInt8(ascii: ",") {
                position += 1
                skipWhitespace()
                continue
            }
            try expect(UInt8(ascii: "]"), "expected ',' or ']' in field \"\(field)\"")
            return blockIds
        }
    }

    /// Parses a JSON number that must be a non-negative integer: the value of `field`, or
    /// its element at index `element` when the field is an array.
    private mutating func parseNonNegativeInteger(field: String, element: Int? = nil) throws(TraceLineFailure) -> Int {
        let start = position
        let isNegative = peek() == UInt8(ascii: "-")
        if isNegative {
            position += 1
        }
        guard let firstDigit = peek(), isDigit(firstDigit) else {
            if isNegative {
                throw malformed("\(describe(field, element)) has a '-' that is not followed by digits")
            }
            throw wrongType(field: field, element: element, expected: "a non-negative integer")
        }

        var value = 0
        var overflowed = false
        while let byte = peek(), isDigit(byte) {
            let (multiplied, multiplyOverflow) = value.multipliedReportingOverflow(by: 10)
            let (added, addOverflow) = multiplied.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
            overflowed = overflowed || multiplyOverflow || addOverflow
            value = added
            position += 1
        }

        // JSON forbids leading zeros, so "007" is a syntax error, not the number 7.
        if firstDigit == UInt8(ascii: "0") && position - start > (isNegative ? 2 : 1) {
            throw malformed("\(describe(field, element)) has a leading zero (\(text(from: start))), which JSON does not allow")
        }
        if let byte = peek(), byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") {
            throw TraceLineFailure(
                code: .invalidValue,
                field: field,
                message: "\(describe(field, element)) must be an integer without a fraction or exponent, "
                    + "but it starts with \(text(from: start, upTo: position + 1))"
            )
        }
        if overflowed {
            throw TraceLineFailure(
                code: .invalidValue,
                field: field,
                message: "\(describe(field, element)) (\(text(from: start))) does not fit in a 64-bit integer"
            )
        }
        if isNegative && value != 0 {
            throw TraceLineFailure(
                code: .negativeValue,
                field: field,
                message: "\(describe(field, element)) is negative (\(text(from: start)))"
            )
        }
        return value
    }

    /// Builds the error for a value of the wrong JSON type, or a syntax error when the bytes start no JSON value.
    private func wrongType(field: String, element: Int?, expected: String) -> TraceLineFailure {
        guard let byte = peek() else {
            return malformed("\(describe(field, element)) has no value before the end of the line")
        }

        let found: String
        switch byte {
        case UInt8(ascii: "\""): found = "a string"
        case UInt8(ascii: "t"), UInt8(ascii: "f"): found = "a boolean"
        case UInt8(ascii: "n"): found = "null"
        case UInt8(ascii: "["): found = "an array"
        case UInt8(ascii: "{"): found = "an object"
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): found = "a number"
        default:
            return malformed("\(describe(field, element)) has an invalid JSON value at column \(position + 1)")
        }
        return TraceLineFailure(
            code: .invalidValue,
            field: field,
            message: "\(describe(field, element)) must be \(expected), but it is \(found)"
        )
    }

    private func describe(_ field: String, _ element: Int?) -> String {
        guard let element else {
            return "field \"\(field)\""
        }
        return "element \(element) of field \"\(field)\""
    }

    /// Returns the line's text from byte offset `start` up to, not including, `end` or else the current position.
    private func text(from start: Int, upTo end: Int? = nil) -> String {
        let stop = min(end ?? position, bytes.count)
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<stop]), as: UTF8.self)
    }

    /// Parses the rest of a JSON string whose opening quote was consumed, decoding escapes.
    private mutating func parseStringBody() throws(TraceLineFailure) -> String {
        let start = position
        var decoded: [UInt8] = []
        var hasEscapes = false

        while true {
            guard let byte = peek() else {
                throw malformed("a string is not closed before the end of the line")
            }
            position += 1
            switch byte {
            case UInt8(ascii: "\""):
                if hasEscapes {
                    return String(decoding: decoded, as: UTF8.self)
                }
                return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<(position - 1)]), as: UTF8.self)
            case UInt8(ascii: "\\"):
                if !hasEscapes {
                    hasEscapes = true
                    decoded.append(contentsOf: bytes[start..<(position - 1)])
                }
                try decodeEscape(into: &decoded)
            case 0x00..<0x20:
                throw malformed("a string contains an unescaped control character at column \(position)")
            default:
                if hasEscapes {
                    decoded.append(byte)
                }
            }
        }
    }

    /// Decodes the escape after a backslash and appends its UTF-8 bytes.
    private mutating func decodeEscape(into decoded: inout [UInt8]) throws(TraceLineFailure) {
        guard let byte = peek() else {
            throw malformed("a string ends inside an escape sequence")
        }
        position += 1

        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"):
            decoded.append(byte)
        case UInt8(ascii: "b"): decoded.append(0x08)
        case UInt8(ascii: "f"): decoded.append(0x0C)
        case UInt8(ascii: "n"): decoded.append(0x0A)
        case UInt8(ascii: "r"): decoded.append(0x0D)
        case UInt8(ascii: "t"): decoded.append(0x09)
        case UInt8(ascii: "u"):
            let scalar = try parseUnicodeEscape()
            decoded.append(contentsOf: String(Character(scalar)).utf8)
        default:
            throw malformed("a string contains the invalid escape \\\(Character(Unicode.Scalar(byte)))")
        }
    }

    /// Parses the hex digits of a `\u` escape, joining a UTF-16 surrogate pair into one scalar.
    private mutating func parseUnicodeEscape() throws(TraceLineFailure) -> Unicode.Scalar {
        let first = try parseFourHexDigits()
        guard (0xD800...0xDBFF).contains(first) else {
            guard let scalar = Unicode.Scalar(first) else {
                throw malformed("a string contains a \\u escape of a lone low surrogate")
            }
            return scalar
        }

        guard peek() == UInt8(ascii: "\\") else {
            throw malformed("a string contains a high surrogate escape without its low surrogate")
        }
        position += 1
        try expect(UInt8(ascii: "u"), "a string contains a high surrogate escape without its low surrogate")
        let second = try parseFourHexDigits()
        guard (0xDC00...0xDFFF).contains(second) else {
            throw malformed("a string contains a high surrogate escape without its low surrogate")
        }
        let combined = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        guard let scalar = Unicode.Scalar(combined) else {
            throw malformed("a string contains an invalid surrogate pair")
        }
        return scalar
    }

    private mutating func parseFourHexDigits() throws(TraceLineFailure) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = peek(), let digit = hexDigitValue(byte) else {
                throw malformed("a \\u escape needs four hexadecimal digits")
            }
            value = value << 4 | digit
            position += 1
        }
        return value
    }

    private func rejectDuplicate(_ name: String, alreadySet: Bool) throws(TraceLineFailure) {
        if alreadySet {
            throw TraceLineFailure(code: .duplicateField, field: name, message: "field \"\(name)\" appears twice")
        }
    }

    private mutating func expect(_ byte: UInt8, _ message: @autoclosure () -> String) throws(TraceLineFailure) {
        guard peek() == byte else {
            throw malformed("\(message()) at column \(position + 1)")
        }
        position += 1
    }

    private mutating func skipWhitespace() {
        while let byte = peek(),
            byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\n")
        {
            position += 1
        }
    }

    private func peek() -> UInt8? {
        position < bytes.count ? bytes[position] : nil
    }

    private func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    private func hexDigitValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(byte - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }

    private func malformed(_ message: String) -> TraceLineFailure {
        TraceLineFailure(code: .malformedLine, field: nil, message: message)
    }

    private func missing(_ field: String) -> TraceLineFailure {
        TraceLineFailure(code: .missingField, field: field, message: "missing field \"\(field)\"")
    }
}
