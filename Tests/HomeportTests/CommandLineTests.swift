import Foundation
import Testing

/// Runs the built `homeport` executable as a user would and checks its output and exit status.
@Suite struct CommandLineTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func executable() throws -> URL {
        let bundle = Bundle.main.bundleURL
        // Tests run from .build/<triple>/debug (or release); the executable sits beside the test bundle.
        for directory in [bundle, bundle.deletingLastPathComponent()] {
            let candidate = directory.appendingPathComponent("homeport")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        let fallback = packageRoot.appendingPathComponent(".build/debug/homeport")
        guard FileManager.default.isExecutableFile(atPath: fallback.path) else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: fallback.path])
        }
        return fallback
    }

    static func run(_ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
        let process = Process()
        process.executableURL = try executable()
        process.arguments = arguments
        process.currentDirectoryURL = packageRoot
        let output = Pipe()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        try process.run()
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: outputData, as: UTF8.self), String(decoding: errorData, as: UTF8.self))
    }

    static func temporaryFile(_ contents: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("homeport-\(UUID().uuidString).json").path
        try Data(contents.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func policyCheckPrintsDefaultTable() throws {
        let result = try Self.run(["policy", "check"])
        #expect(result.status == 0)
        #expect(result.output.contains("conversation_buffer"))
        #expect(result.output.contains("no errors, no warnings"))
        let sessionLocal = try #require(result.output.range(of: "session-local"))
        let linearizable = try #require(result.output.range(of: "linearizable  "))
        #expect(sessionLocal.lowerBound < linearizable.lowerBound)
    }

    @Test func policyCheckFailsOnRuleError() throws {
        let path = try Self.temporaryFile(
            """
            {"version": 1, "kinds": [{"kind": "usage_quota", "readers": "cross-session", "staleReadCost": "incorrect", "consistency": "eventually-global"}]}
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try Self.run(["policy", "check", path])
        #expect(result.status == 1)
        #expect(result.output.contains("incorrectRequiresLinearizable"))
    }

    @Test func policyCheckReportsMissingFile() throws {
        let result = try Self.run(["policy", "check", "/nonexistent/policy.json"])
        #expect(result.status == 2)
        #expect(result.error.contains("/nonexistent/policy.json"))
    }

    @Test func demoWithoutTraceOffersSynthetic() throws {
        let result = try Self.run(["demo", "--trace", "/nonexistent/trace.jsonl"])
        #expect(result.status == 2)
        #expect(result.error.contains("kvcache-ai/Mooncake"))
        #expect(result.error.contains("--workload synthetic"))
    }

    @Test func demoRejectsUnknownOption() throws {
        let result = try Self.run(["demo", "--speedy", "3"])
        #expect(result.status == 2)
        #expect(result.error.contains("unknown option --speedy"))
    }

    @Test func demoRejectsBadShare() throws {
        let result = try Self.run(["demo", "--roaming", "1.5"])
        #expect(result.status == 2)
        #expect(result.error.contains("--roaming must be a number from 0.0 to 1.0"))
    }

    @Test func syntheticDemoRunsCleanly() throws {
        let report = FileManager.default.temporaryDirectory.appendingPathComponent("demo-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: report) }
        let result = try Self.run([
            "demo", "--workload", "synthetic", "--limit", "150", "--speed", "2000", "--latency-scale", "0.05", "--report", report,
        ])
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output.contains("retries 0, errors 0"))
        #expect(result.output.contains("append_user_turn"))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any]
        #expect(json?["requests"] as? Int == 150)
        #expect(json?["errorCount"] as? Int == 0)
    }

    @Test func unknownCommandIsAUsageError() throws {
        let result = try Self.run(["launch"])
        #expect(result.status == 2)
        #expect(result.error.contains("unknown command \"launch\""))
    }
}
