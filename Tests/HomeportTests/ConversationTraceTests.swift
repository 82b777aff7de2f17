import Foundation
import Homeport
import Testing

/// Path of the Mooncake conversation trace: `HOMEPORT_TRACE` if set, else
/// `../shared/data/mooncake/conversation_trace.jsonl` beside the package root.
private func mooncakeTracePath() -> String {
    if let path = ProcessInfo.processInfo.environment["HOMEPORT_TRACE"], !path.isEmpty {
        return path
    }
    let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // HomeportTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()
    return packageRoot.appendingPathComponent("../shared/data/mooncake/conversation_trace.jsonl").standardized.path
}

/// Loads the real trace, failing the test when the file is missing.
private func loadMooncakeTrace() throws -> ConversationTrace {
    let path = mooncakeTracePath()
    try #require(
        FileManager.default.fileExists(atPath: path),
        "Mooncake conversation trace not found at \(path). Set HOMEPORT_TRACE to the path of conversation_trace.jsonl."
    )
    return try ConversationTrace.load(path: path)
}

/// Writes `contents` to a new temporary file and returns its path.
private func writeTemporaryTraceFile(_ contents: String) throws -> String {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("homeport-trace-\(UUID().uuidString).jsonl")
    try Data(contents.utf8).write(to: url)
    return url.path
}

/// Loads `contents` from a temporary file and returns the load error, or nil if it loaded.
private func traceLoadError(_ contents: String) throws -> TraceError? {
    let path = try writeTemporaryTraceFile(contents)
    defer { try? FileManager.default.removeItem(atPath: path) }

    do {
        _ = try ConversationTrace.load(path: path)
        return nil
    } catch {
        return error
    }
}

/// Builds a trace from block lists, one request a list, one second apart.
private func traceOfBlockLists(_ blockLists: [[Int]]) -> ConversationTrace {
    let requests = blockLists.enumerated().map { index, blocks in
        TraceRequest(
            index: index,
            timestampMilliseconds: index * 1_000,
            inputTokens: blocks.count * 512,
            outputTokens: 100,
            blockHashes: blocks
        )
    }
    return ConversationTrace(requests: requests)
}

private let validTraceLine = #"{"timestamp": 0, "input_length": 600, "output_length": 20, "hash_ids": [0, 1]}"#

@Suite("ConversationTrace loading")
struct ConversationTraceLoadingTests {
    @Test("Mooncake trace loads completely")
    func mooncakeTraceLoads() throws {
        let trace = try loadMooncakeTrace()

        #expect(trace.requests.count == 12_031)
        #expect(trace.durationMilliseconds == 3_536_999)
        #expect(trace.requests.indices.allSatisfy { trace.requests[$0].index == $0 })

        let first = try #require(trace.requests.first)
        #expect(first.timestampMilliseconds == 0)
        #expect(first.inputTokens == 6_758)
        #expect(first.outputTokens == 500)
        #expect(first.blockHashes == Array(0...13))

        let inputs = trace.requests.map(\.inputTokens).sorted()
        let outputs = trace.requests.map(\.outputTokens).sorted()
        #expect(inputs[inputs.count / 2] == 6_909)
        #expect(outputs[outputs.count / 2] == 350)
        #expect(trace.requests.allSatisfy { $0.blockHashes.first == 0 })
    }

    @Test("lenient JSON layouts parse")
    func jsonLayoutsParse() throws {
        let contents = [
            #"{"hash_ids":[0,1,2],"output_length":7,"input_length":1100,"timestamp":5}"#,
            "  {\t\"timestamp\" : 5 , \"input_length\":600,\"output_length\":0,\"hash_ids\":[ 0 , 3 ] }  \r",
            #"{"time\u0073tamp": 9, "input_length": 1, "output_length": -0, "hash_ids": []}"#,
        ].joined(separator: "\n")
        let path = try writeTemporaryTraceFile(contents)
        defer { try? FileManager.default.removeItem(atPath: path) }

        let trace = try ConversationTrace.load(path: path)

        #expect(
            trace.requests == [
                TraceRequest(index: 0, timestampMilliseconds: 5, inputTokens: 1_100, outputTokens: 7, blockHashes: [0, 1, 2]),
                TraceRequest(index: 1, timestampMilliseconds: 5, inputTokens: 600, outputTokens: 0, blockHashes: [0, 3]),
                TraceRequest(index: 2, timestampMilliseconds: 9, inputTokens: 1, outputTokens: 0, blockHashes: []),
            ]
        )
        #expect(trace.durationMilliseconds == 4)
    }

    @Test("final newline is optional")
    func finalNewlineOptional() throws {
        for contents in [validTraceLine, validTraceLine + "\n", validTraceLine + "\r\n"] {
            let error = try traceLoadError(contents)
            #expect(error == nil, "contents \(contents.debugDescription)")
        }
    }

    struct BadLineCase: CustomTestStringConvertible, Sendable {
        var name: String
        var line: String
        var code: TraceError.Code
        var field: String?
        var testDescription: String { name }
    }

    @Test(
        "bad second line is rejected",
        arguments: [
            BadLineCase(
                name: "missing field",
                line: #"{"timestamp": 1, "input_length": 600, "output_length": 20}"#,
                code: .missingField,
                field: "hash_ids"
            ),
            BadLineCase(
                name: "negative count",
                line: #"{"timestamp": 1, "input_length": -600, "output_length": 20, "hash_ids": [0, 1]}"#,
                code: .negativeValue,
                field: "input_length"
            ),
            BadLineCase(
                name: "negative block id",
                line: #"{"timestamp": 1, "input_length": 600, "output_length": 20, "hash_ids": [0, -1]}"#,
                code: .negativeValue,
                field: "hash_ids"
            ),
            BadLineCase(
                name: "unknown field",
                line: #"{"timestamp": 1, "input_length": 600, "output_length": 20, "hash_ids": [0, 1], "session": 4}"#,
                code: .unknownField,
                field: "session"
            ),
            BadLineCase(
                name: "duplicate field",
                line: #"{"timestamp": 1, "timestamp": 2, "input_length": 600, "output_length": 20, "hash_ids": [0, 1]}"#,
                code: .duplicateField,
                field: "timestamp"
            ),
            BadLineCase(
                name: "string value",
                line: #"{"timestamp": "1", "input_length": 600, "output_length": 20, "hash_ids": [0, 1]}"#,
                code: .invalidValue,
                field: "timestamp"
            ),
            BadLineCase(
                name: "fraction",
                line: #"{"timestamp": 1, "input_length": 600.5, "output_length": 20, "hash_ids": [0, 1]}"#,
                code: .invalidValue,
                field: "input_length"
            ),
            BadLineCase(
                name: "exponent",
                line: #"{"timestamp": 1, "input_length": 6e2, "output_length": 20, "hash_ids": [0, 1]}"#,
                code: .invalidValue,
                field: "input_length"
            ),
            BadLineCase(
                name: "integer overflow",
                line: #"{"timestamp": 1, "input_length": 600, "output_length": 99999999999999999999, "hash_ids": [0, 1]}"#,
                code: .invalidValue,
                field: "output_length"
            ),
            BadLineCase(
                name: "null block list",
                line: #"{"timestamp": 1, "input_length": 600, "output_length": 20, "hash_ids": null}"#,
                code: .invalidValue,
                field: "hash_ids"
            ),
            BadLineCase(
                name: "nested block list",
                line: #"{"timestamp": 1, "input_length": 600, "output_length": 20, "hash_ids": [0, [1]]}"#,
                code: .invalidValue,
                field: "hash_ids"
            ),
            BadLineCase(
                name: "decreasing timestamp",
                line: #"{"timestamp": 0, "input_length": 600, "output_length": 20, "hash_ids": [0, 1]}"#,
                code: .timestampOutOfOrder,
                field: "timestamp"
            ),
            BadLineCase(
                name: "truncated object",
                line: #"{"timestamp": 1, "input_length": 600,"#,
                code: .malformedLine,
                field: nil
            ),
            BadLineCase(
                name: "leading zero",
                line: #"{"timestamp": 01, "input_length": 600, "output_length": 20, "hash_ids": [0, 1]}"#,
                code: .malformedLine,
                field: nil
            ),
            BadLineCase(
                name: "text after object",
                line: validTraceLine + " x",
                code: .malformedLine,
                field: nil
            ),
            BadLineCase(
                name: "array instead of object",
                line: "[1, 600, 20, [0, 1]]",
                code: .malformedLine,
                field: nil
            ),
            BadLineCase(
                name: "unquoted field name",
                line: #"{timestamp: 1, "input_length": 600, "output_length": 20, "hash_ids": [0, 1]}"#,
                code: .malformedLine,
                field: nil
            ),
            BadLineCase(name: "blank line", line: "  ", code: .malformedLine, field: nil),
        ]
    )
    func badLineRejected(_ badCase: BadLineCase) throws {
        let firstLine = #"{"timestamp": 1, "input_length": 600, "output_length": 20, "hash_ids": [0, 1]}"#
        let lastLine = validTraceLine.replacingOccurrences(of: "\"timestamp\": 0", with: "\"timestamp\": 9")
        let contents = [firstLine, badCase.line, lastLine].joined(separator: "\n")

        let error = try #require(try traceLoadError(contents))

        #expect(error.code == badCase.code)
        #expect(error.line == 2)
        #expect(error.field == badCase.field)
        #expect(error.description.contains(", line 2: "))
        if let field = badCase.field {
            #expect(error.message.contains("\"\(field)\""), "message: \(error.message)")
        }
    }

    @Test("error description names path, line and field")
    func errorDescriptionNamesLocation() throws {
        let badLine = #"{"timestamp": 1, "input_length": 600, "output_length": -3, "hash_ids": [0]}"#
        let path = try writeTemporaryTraceFile(validTraceLine + "\n" + badLine)
        defer { try? FileManager.default.removeItem(atPath: path) }

        var loadError: TraceError?
        do {
            _ = try ConversationTrace.load(path: path)
        } catch {
            loadError = error
        }

        let error = try #require(loadError)
        #expect(error.path == path)
        #expect(error.description == "\(path), line 2: field \"output_length\" is negative (-3)")
    }

    @Test("blank line at the end is rejected")
    func trailingBlankLineRejected() throws {
        let error = try #require(try traceLoadError(validTraceLine + "\n\n"))

        #expect(error.code == .malformedLine)
        #expect(error.line == 2)
    }

    @Test("empty file is rejected")
    func emptyFileRejected() throws {
        let error = try #require(try traceLoadError(""))

        #expect(error.code == .emptyTrace)
        #expect(error.line == nil)
    }

    @Test("missing file names the path")
    func missingFileNamesPath() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("homeport-absent-\(UUID().uuidString).jsonl").path

        var loadError: TraceError?
        do {
            _ = try ConversationTrace.load(path: path)
        } catch {
            loadError = error
        }

        let error = try #require(loadError)
        #expect(error.code == .fileNotFound)
        #expect(error.line == nil)
        #expect(error.description.contains(path))
    }

    @Test("directory path is rejected")
    func directoryRejected() throws {
        let path = FileManager.default.temporaryDirectory.path

        var loadError: TraceError?
        do {
            _ = try ConversationTrace.load(path: path)
        } catch {
            loadError = error
        }

        let error = try #require(loadError)
        #expect(error.code == .readFailed)
    }
}

@Suite("SessionRebuilder")
struct SessionRebuilderTests {
    @Test("Mooncake trace yields published sessions")
    func mooncakeSessions() throws {
        let trace = try loadMooncakeTrace()

        let rebuilt = SessionRebuilder.rebuild(trace)
        let histogram = rebuilt.turnCountHistogram()

        #expect(rebuilt.sessions.count == 8_057)
        #expect(rebuilt.followUpCount == 3_974)
        #expect(histogram.keys.max() == 43)
        #expect(histogram[1] == 6_045)
        #expect(histogram[2] == 1_225)
        #expect(histogram[3] == 392)
        #expect(histogram.values.reduce(0, +) == 8_057)
        #expect(histogram.map { $0.key * $0.value }.reduce(0, +) == 12_031)
    }

    @Test("Mooncake sessions are consistent")
    func mooncakeSessionsConsistent() throws {
        let trace = try loadMooncakeTrace()

        let rebuilt = SessionRebuilder.rebuild(trace)

        for (position, session) in rebuilt.sessions.enumerated() {
            #expect(session.requestIndices.first == session.id)
            #expect(session.requestIndices == session.requestIndices.sorted())
            #expect(session.requestIndices.allSatisfy { rebuilt.sessionOfRequest[$0] == position })
            #expect(rebuilt.predecessorOfRequest[session.id] == nil)
        }
        for (index, predecessor) in rebuilt.predecessorOfRequest.enumerated() {
            guard let predecessor else { continue }
            #expect(predecessor < index)
            #expect(rebuilt.sessionOfRequest[predecessor] == rebuilt.sessionOfRequest[index])
        }
    }

    @Test("longest prefix wins over a later shorter one")
    func longestPrefixWins() {
        let trace = traceOfBlockLists([
            [0, 1, 2, 3, 7],  // link prefix [0, 1, 2, 3]
            [0, 1, 2, 8],  // link prefix [0, 1, 2], a new session
            [0, 1, 2, 3, 5],
        ])

        let rebuilt = SessionRebuilder.rebuild(trace)

        #expect(rebuilt.predecessorOfRequest == [nil, nil, 0])
        #expect(rebuilt.sessions == [TraceSession(id: 0, requestIndices: [0, 2]), TraceSession(id: 1, requestIndices: [1])])
        #expect(rebuilt.sessionOfRequest == [0, 1, 0])
    }

    @Test("latest of equal prefixes wins")
    func latestEqualPrefixWins() {
        let trace = traceOfBlockLists([
            [0, 1, 2, 7],
            [0, 1, 2, 8],
            [0, 1, 2, 9],
        ])

        let rebuilt = SessionRebuilder.rebuild(trace)

        #expect(rebuilt.predecessorOfRequest == [nil, 0, 1])
        #expect(rebuilt.sessions == [TraceSession(id: 0, requestIndices: [0, 1, 2])])
    }

    @Test("one-block link prefix does not link")
    func oneBlockPrefixDoesNotLink() {
        let trace = traceOfBlockLists([
            [0, 5],  // link prefix [0]
            [0, 5, 6],
        ])

        let rebuilt = SessionRebuilder.rebuild(trace)

        #expect(rebuilt.predecessorOfRequest == [nil, nil])
        #expect(rebuilt.sessions.count == 2)
    }

    @Test("two-block link prefix links")
    func twoBlockPrefixLinks() {
        let trace = traceOfBlockLists([
            [0, 5, 6],  // link prefix [0, 5]
            [0, 5, 7],
        ])

        let rebuilt = SessionRebuilder.rebuild(trace)

        #expect(rebuilt.predecessorOfRequest == [nil, 0])
        #expect(rebuilt.followUpCount == 1)
    }

    @Test("shared system block alone never links")
    func systemBlockAloneNeverLinks() {
        let trace = traceOfBlockLists([
            [0],
            [0, 1],
            [0, 2, 3],
            [0, 4, 5, 6],
            [0],
            [0, 7, 8],
        ])

        let rebuilt = SessionRebuilder.rebuild(trace)

        #expect(rebuilt.predecessorOfRequest.allSatisfy { $0 == nil })
        #expect(rebuilt.followUpCount == 0)
        #expect(rebuilt.turnCountHistogram() == [1: 6])
    }

    @Test("link prefix equal to whole list links")
    func wholeListPrefixLinks() {
        let trace = traceOfBlockLists([
            [0, 1, 2, 3],  // link prefix [0, 1, 2]
            [0, 1, 2],
        ])

        let rebuilt = SessionRebuilder.rebuild(trace)

        #expect(rebuilt.predecessorOfRequest == [nil, 0])
    }

    @Test("request never continues a later one")
    func neverLinksToFuture() {
        let trace = traceOfBlockLists([
            [0, 1, 2],  // equals the link prefix of request 1, which comes later
            [0, 1, 2, 3],  // continues request 0 through [0, 1]
        ])

        let rebuilt = SessionRebuilder.rebuild(trace)

        #expect(rebuilt.predecessorOfRequest == [nil, 0])
        #expect(rebuilt.sessions == [TraceSession(id: 0, requestIndices: [0, 1])])
    }

    @Test("branches join one session")
    func branchesJoinOneSession() {
        let trace = traceOfBlockLists([
            [0, 1, 2, 3],
            [0, 9, 9, 9],
            [0, 1, 2, 4, 5],
            [0, 1, 2, 6, 7],
            [0, 1, 2, 4, 5, 8],
        ])

        let rebuilt = SessionRebuilder.rebuild(trace)

        #expect(rebuilt.predecessorOfRequest == [nil, nil, 0, 0, 2])
        #expect(rebuilt.sessions == [TraceSession(id: 0, requestIndices: [0, 2, 3, 4]), TraceSession(id: 1, requestIndices: [1])])
        #expect(rebuilt.turnCountHistogram() == [4: 1, 1: 1])
    }

    @Test("empty trace and empty block lists")
    func emptyInputs() {
        let empty = SessionRebuilder.rebuild(traceOfBlockLists([]))
        #expect(empty.sessions.isEmpty)
        #expect(empty.followUpCount == 0)
        #expect(empty.turnCountHistogram().isEmpty)

        let rebuilt = SessionRebuilder.rebuild(traceOfBlockLists([[], [0, 1, 2], []]))
        #expect(rebuilt.predecessorOfRequest == [nil, nil, nil])
        #expect(rebuilt.sessions.count == 3)
    }
}
