import Foundation
import Synchronization
import Testing

@testable import Homeport

/// Three `homeport serve` processes, one per region, with data dirs and a
/// shared etcd, on loopback. One is killed with SIGKILL during a replay and
/// restarted; its neighbour takes it over meanwhile, and it reconciles
/// forward when it returns. No acknowledged write may be missing.
@Suite(.timeLimit(.minutes(3))) struct MultiProcessFailoverTests {
    static let regions = ["us-east", "us-west", "eu-west"]

    /// The processes of a test, replaced by `restart`.
    final class Processes: Sendable {
        let arguments: [String: [String]]
        private let running = Mutex<[String: Process]>([:])
        /// Each process's log (stderr), kept after it exits.
        let logs: URL

        init(arguments: [String: [String]], logs: URL) {
            self.arguments = arguments
            self.logs = logs
        }

        func start(_ region: String) throws {
            let process = Process()
            process.executableURL = try CommandLineTests.executable()
            process.arguments = arguments[region]
            let log = logs.appendingPathComponent("\(region).log")
            if !FileManager.default.fileExists(atPath: log.path) {
                FileManager.default.createFile(atPath: log.path, contents: nil)
            }
            let handle = try FileHandle(forWritingTo: log)
            handle.seekToEndOfFile()
            process.standardError = handle
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            running.withLock { $0[region] = process }
        }

        func kill(_ region: String) {
            guard let process = running.withLock({ $0.removeValue(forKey: region) }) else { return }
            Foundation.kill(process.processIdentifier, SIGKILL)
            waitForProcessExit(process.processIdentifier)
        }

        func stopAll() {
            for region in running.withLock({ Array($0.keys) }) {
                kill(region)
            }
        }

        func log(of region: String) -> String {
            (try? String(contentsOf: logs.appendingPathComponent("\(region).log"), encoding: .utf8)) ?? ""
        }
    }

    /// Waits until a region responds to /healthz.
    static func waitUntilHealthy(_ baseURL: String) async throws {
        let client = HTTPClient(timeout: .seconds(1))
        let port = UInt16(baseURL.split(separator: ":").last!)!
        for _ in 0..<200 {
            if let response = try? await client.send(HTTPRequest(method: "GET", path: "/healthz"), host: "127.0.0.1", port: port),
                response.status == 200
            {
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("\(baseURL) did not become healthy")
    }

    @Test func killedRegionReconcilesForwardWithoutLosingAWrite() async throws {
        let etcd = try await EtcdServer.start()
        defer { etcd.stop() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("homeport-multi-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        // Fixed loopback ports, so that the regions find each other and the
        // restarted region comes back where the others expect it.
        let ports = try Self.regions.map { _ in try freeLoopbackPort() }
        let regionsJSON = zip(Self.regions, ports).map { #"{"name": "\#($0)", "host": "127.0.0.1", "port": \#($1)}"# }
        let topology = directory.appendingPathComponent("topology.json").path
        try Data(
            #"""
            {"regions": [\#(regionsJSON.joined(separator: ", "))],
             "latency": {"oneWayMilliseconds": [
               {"between": ["us-east", "us-west"], "milliseconds": 2},
               {"between": ["us-east", "eu-west"], "milliseconds": 2},
               {"between": ["us-west", "eu-west"], "milliseconds": 2}]}}
            """#.utf8
        ).write(to: URL(fileURLWithPath: topology))
        let keys = directory.appendingPathComponent("keys.json").path
        let key = Base64URL.encode(try SecureRandom.bytes(count: 32))
        try Data(#"{"signingKeyID": "k1", "keys": {"k1": "\#(key)"}}"#.utf8).write(to: URL(fileURLWithPath: keys))

        var arguments: [String: [String]] = [:]
        for region in Self.regions {
            let data = directory.appendingPathComponent(region)
            try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
            arguments[region] = [
                "serve", "--topology", topology, "--region", region, "--keys", keys, "--data-dir", data.path, "--etcd",
                "127.0.0.1:\(etcd.clientPort)", "--lease-ttl-ms", "2000", "--log-level", "info",
            ]
        }
        let processes = Processes(arguments: arguments, logs: directory)
        defer { processes.stopAll() }
        var baseURLs: [String: String] = [:]
        for (region, port) in zip(Self.regions, ports) {
            try processes.start(region)
            baseURLs[region] = "http://127.0.0.1:\(port)"
        }
        for url in baseURLs.values {
            try await Self.waitUntilHealthy(url)
        }

        // About 12 s of traffic. us-east is down from about 30% to 75% of it,
        // long enough for its 2 s lease to expire and us-west to take over.
        let trace = SyntheticWorkload.generate(seed: 5, requestCount: 400, durationMilliseconds: 120_000)
        var configuration = ReplayConfiguration()
        configuration.timeCompression = 10
        configuration.roamingShare = 0.2
        configuration.toolCallShare = 0.3
        configuration.maximumAttempts = 12
        configuration.failure = ReplayConfiguration.RegionFailure(region: "us-east", downAt: 0.3, upAt: 0.75)
        let urls = baseURLs
        let outcome = await TraceReplay(
            trace: trace, sessions: SessionRebuilder.rebuild(trace), regions: Self.regions, baseURLs: urls,
            configuration: configuration,
            faultInjector: { action in
                switch action {
                case .crash(let region):
                    processes.kill(region)
                case .restart(let region):
                    do {
                        try processes.start(region)
                        try await Self.waitUntilHealthy(urls[region]!)
                    } catch {
                        Issue.record("\(region) did not restart: \(error)")
                    }
                }
            }
        ).run()

        let eastLog = processes.log(of: "us-east")
        #expect(processes.log(of: "us-west").contains("takeover won"))
        #expect(eastLog.contains("reconcile finished"), "the restarted us-east never reconciled:\n\(eastLog.suffix(3000))")
        #expect(outcome.lostAcknowledgedTurns == 0)
        #expect(outcome.sessionsMismatched == 0, "\(outcome.recorder.errors)")
        #expect(outcome.sessionsVerified == outcome.sessionsReplayed)
        #expect(outcome.recorder.errors.isEmpty, "\(outcome.recorder.errors)")
        #expect((outcome.failover?.sessionsRehomed ?? 0) > 0)
    }
}
