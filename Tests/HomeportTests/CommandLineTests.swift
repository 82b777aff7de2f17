import Foundation
import Testing
@testable import Homeport

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
            "demo", "--workload", "synthetic", "--limit", "150", "--speed", "2000", "--latency-scale", "0.05", "--no-failure",
            "--report", report,
        ])
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output.contains("retries 0, errors 0"))
        #expect(!result.output.contains("Failover"))
        #expect(result.output.contains("append_user_turn"))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any]
        #expect(json?["requests"] as? Int == 150)
        #expect(json?["errorCount"] as? Int == 0)
    }

    @Test func demoFailsARegionByDefaultAndLosesNothing() throws {
        let report = FileManager.default.temporaryDirectory.appendingPathComponent("demo-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: report) }
        // 600 requests over about 6 s: the first region is down from 2.4 s to 4.2 s.
        let result = try Self.run([
            "demo", "--workload", "synthetic", "--limit", "600", "--speed", "30", "--latency-scale", "0.05", "--report", report,
        ])
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output.contains("Failover"))
        #expect(result.output.contains("us-east crashed at"))
        #expect(result.output.contains("acknowledged turns lost: 0 (must be 0 with a data dir)"))
        #expect(result.output.contains("errors 0"))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any]
        let failover = json?["failover"] as? [String: Any]
        #expect(failover?["durable"] as? Bool == true)
        #expect(json?["lostAcknowledgedTurns"] as? Int == 0)
    }

    @Test func demoRejectsContradictoryFailureOptions() throws {
        let result = try Self.run(["demo", "--workload", "synthetic", "--limit", "10", "--no-failure", "--fail-at", "0.2"])
        #expect(result.status == 2)
        #expect(result.error.contains("--fail-at contradicts --no-failure"))
    }

    @Test func demoRejectsUnknownFailRegion() throws {
        let result = try Self.run(["demo", "--workload", "synthetic", "--limit", "10", "--fail-region", "mars"])
        #expect(result.status == 2)
        #expect(result.error.contains("--fail-region mars is not a region"))
    }

    @Test func demoRejectsFailureOutsideReplay() throws {
        let result = try Self.run(["demo", "--fail-region", "us-east", "--fail-at", "0.8", "--recover-at", "0.5"])
        #expect(result.status == 2)
        #expect(result.error.contains("0 < fail-at < recover-at < 1"))
    }

    @Test func unknownCommandIsAUsageError() throws {
        let result = try Self.run(["launch"])
        #expect(result.status == 2)
        #expect(result.error.contains("unknown command \"launch\""))
    }
}

@Suite struct ServeCrashRecoveryTests {
    /// Starts `homeport serve` on an ephemeral port and returns the process and the port from its log.
    static func startServe(topology: String, keys: String, dataDirectory: String) throws -> (Process, UInt16, Pipe) {
        let process = Process()
        process.executableURL = try CommandLineTests.executable()
        process.arguments = ["serve", "--topology", topology, "--keys", keys, "--data-dir", dataDirectory, "--log-level", "info"]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()

        // The node logs its bound port as a JSON line once it listens.
        var buffered = ""
        while true {
            let chunk = errors.fileHandleForReading.availableData
            guard !chunk.isEmpty else { throw CocoaError(.fileReadUnknown) }
            buffered += String(decoding: chunk, as: UTF8.self)
            for line in buffered.split(separator: "\n") where line.contains("region node started") {
                let json = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String]
                if let port = json?["port"].flatMap(UInt16.init) { return (process, port, errors) }
            }
        }
    }

    @Test func killedNodeRestartsWithEveryAcknowledgedWrite() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("homeport-crash-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let topology = directory.appendingPathComponent("topology.json").path
        let keys = directory.appendingPathComponent("keys.json").path
        try Data(#"{"regions": [{"name": "us-east", "host": "127.0.0.1", "port": 0}], "latency": {"oneWayMilliseconds": []}}"#.utf8)
            .write(to: URL(fileURLWithPath: topology))
        let key = Base64URL.encode(try SecureRandom.bytes(count: 32))
        try Data(#"{"signingKeyID": "k1", "keys": {"k1": "\#(key)"}}"#.utf8).write(to: URL(fileURLWithPath: keys))

        var (process, port, _) = try Self.startServe(topology: topology, keys: keys, dataDirectory: directory.path)
        let client = HomeportClient()
        var baseURL = "http://127.0.0.1:\(port)"
        let (session, _) = try await client.createSession(at: baseURL, tenant: "acme")
        for index in 0..<50 {
            _ = try await client.appendTurn(
                at: baseURL, session, role: "user", content: "turn \(index)", tokens: 2, idempotencyKey: "k\(index)")
        }

        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal)

        (process, port, _) = try Self.startServe(topology: topology, keys: keys, dataDirectory: directory.path)
        defer {
            process.terminate()
            process.waitUntilExit()
        }
        baseURL = "http://127.0.0.1:\(port)"

        let read = try await client.readTurns(at: baseURL, session, tail: nil)
        let turns = read.body["turns"]?.arrayValue ?? []
        #expect(turns.count == 50)
        #expect(turns.last?["content"]?.stringValue == "turn 49")
        #expect(read.body["lastSeq"]?.integerValue == 50)

        // A retry of an acknowledged append is still recognised after the restart.
        let retry = try await client.appendTurn(at: baseURL, session, role: "user", content: "turn 49", tokens: 2, idempotencyKey: "k49")
        #expect(retry.replayed)
        let next = try await client.appendTurn(at: baseURL, session, role: "user", content: "turn 50", tokens: 2, idempotencyKey: "k50")
        #expect(next.body["turn"]?["seq"]?.integerValue == 51)
    }
}
