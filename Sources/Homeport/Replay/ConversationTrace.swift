import Foundation

/// One request of a conversation trace: when it arrived, its size in tokens, and the
/// KV-cache blocks of its prompt.
public struct TraceRequest: Sendable, Equatable {
    /// The 0-based position of the request in the trace, which is its arrival order.
    public let index: Int
    /// Arrival time in milliseconds from the start of the trace.
    public let timestampMilliseconds: Int
    /// Prompt length in tokens.
    public let inputTokens: Int
    /// Generated length in tokens.
    public let outputTokens: Int
    /// Ids of the prompt's KV-cache blocks of 512 tokens, in prompt order. Two requests
    /// with equal ids at positions 0 through k have equal prompt tokens up to the end of
    /// block k. Only the last block may be partial.
    public let blockHashes: [Int]

    public init(
        index: Int,
        timestampMilliseconds: Int,
        inputTokens: Int,
        outputTokens: Int,
        blockHashes: [Int]
    ) {
        self.index = index
        self.timestampMilliseconds = timestampMilliseconds
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.blockHashes = blockHashes
    }
}

/// A request trace in the Mooncake conversation format, in arrival order.
///
/// Invariants: `requests[i].index == i`, and timestamps never decrease along the array.
public struct ConversationTrace: Sendable, Equatable {
    public let requests: [TraceRequest]

    /// Creates a trace from requests already in arrival order.
    ///
    /// The caller must number the requests by position and keep timestamps non-decreasing.
    /// A violation stops the program, because session rebuilding and replay both depend on
    /// that order.
    public init(requests: [TraceRequest]) {
        for (position, request) in requests.enumerated() {
            precondition(request.index == position, "request index \(request.index) differs from its position \(position)")
            if position > 0 {
                precondition(
                    request.timestampMilliseconds >= requests[position - 1].timestampMilliseconds,
                    "request \(position) arrives before request \(position - 1)"
                )
            }
        }
        self.requests = requests
    }

    /// Time in milliseconds from the first arrival to the last, or 0 for fewer than two requests.
    public var durationMilliseconds: Int {
        guard let first = requests.first, let last = requests.last else {
            return 0
        }
        return last.timestampMilliseconds - first.timestampMilliseconds
    }

    /// Reads a trace from a JSON Lines file with one request object a line.
    ///
    /// Each line must be a JSON object with exactly the fields `timestamp` (milliseconds),
    /// `input_length`, `output_length` (tokens) and `hash_ids` (an array of block ids), all
    /// non-negative integers written without a fraction or exponent. Timestamps must not
    /// decrease from one line to the next. A final newline is optional, but every other
    /// line, including a blank one, counts as a request line.
    ///
    /// - Throws: `TraceError` naming `path`, and for a bad line also the 1-based line
    ///   number and the field. The first bad line stops the load.
    public static func load(path: String) throws(TraceError) -> ConversationTrace {
        let contents = try readTraceBytes(path: path)

        let requests = try contents.withUnsafeBufferPointer { bytes throws(TraceError) -> [TraceRequest] in
            try parseTraceLines(bytes, path: path)
        }

        guard !requests.isEmpty else {
            throw TraceError(code: .emptyTrace, path: path, message: "the trace file contains no requests")
        }
        return ConversationTrace(requests: requests)
    }

    private static func readTraceBytes(path: String) throws(TraceError) -> [UInt8] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TraceError(code: .fileNotFound, path: path, message: "trace file not found")
        }
        guard !isDirectory.boolValue else {
            throw TraceError(code: .readFailed, path: path, message: "the path is a directory, not a trace file")
        }

        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            return [UInt8](data)
        } catch {
            throw TraceError(code: .readFailed, path: path, message: "failed to read the trace file: \(error)")
        }
    }

    private static func parseTraceLines(_ bytes: UnsafeBufferPointer<UInt8>, path: String) throws(TraceError) -> [TraceRequest] {
        let newline = UInt8(ascii: "\n")
        var requests: [TraceRequest] = []
        var lineStart = 0
        var lineNumber = 0

        while lineStart < bytes.count {
            var lineEnd = lineStart
            while lineEnd < bytes.count && bytes[lineEnd] != newline {
                lineEnd += 1
            }
            lineNumber += 1

            let line = UnsafeBufferPointer(rebasing: bytes[lineStart..<lineEnd])
            let fields: TraceLineFields
            do {
                fields = try TraceLineParser.parse(line)
            } catch {
                throw TraceError(code: error.code, path: path, line: lineNumber, field: error.field, message: error.message)
            }

            if let previous = requests.last, fields.timestamp < previous.timestampMilliseconds {
                throw TraceError(
                    code: .timestampOutOfOrder,
                    path: path,
                    line: lineNumber,
                    field: "timestamp",
                    message: "field \"timestamp\" (\(fields.timestamp)) is earlier than \(previous.timestampMilliseconds) "
                        + "on line \(lineNumber - 1), but lines must be in arrival order"
                )
            }

            requests.append(
                TraceRequest(
                    index: requests.count,
                    timestampMilliseconds: fields.timestamp,
                    inputTokens: fields.inputLength,
                    outputTokens: fields.outputLength,
                    blockHashes: fields.hashIds
                )
            )
            lineStart = lineEnd + 1
        }
        return requests
    }
}
