import Foundation
import Synchronization

@testable import Homeport

/// A failure to start redis-server for a test, with what to do about it.
struct RedisServerError: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// A Redis server that a test starts on loopback and stops at the end.
///
/// It runs `/usr/bin/redis-server` (Debian package redis-server, which
/// scripts/setup.sh installs) on 127.0.0.1 and a port the kernel reported
/// free, with no RDB snapshots and the append-only file on
/// (`appendfsync everysec`, Redis's default) in a fresh temporary directory.
/// `kill()` ends the process and keeps the directory, so `restart()` brings
/// the same data back on the same port. `stop()`, or the deinitializer as a
/// fallback, kills the process and removes the directory.
final class RedisServer: Sendable {
    static let executablePath = "/usr/bin/redis-server"

    let port: UInt16
    /// The temporary directory with the append-only file and the server's log.
    let directory: URL
    /// The running process, nil while killed or once stopped.
    private let process: Mutex<Process?>
    private let removed = Atomic<Bool>(false)

    private init(port: UInt16, directory: URL, process: Process) {
        self.port = port
        self.directory = directory
        self.process = Mutex(process)
    }

    deinit {
        stop()
    }

    private var logURL: URL { directory.appendingPathComponent("redis.log") }

    /// Returns a store configuration for this server, with short timeouts so
    /// that the failure tests fail fast.
    func configuration(keyPrefix: String, threadCount: Int = 2) -> RedisSessionStore.Configuration {
        RedisSessionStore.Configuration(
            host: "127.0.0.1", port: Int(port), keyPrefix: keyPrefix, threadCount: threadCount, connectTimeout: .milliseconds(500),
            commandTimeout: .seconds(2), reconnectDelay: .milliseconds(20))
    }

    /// Starts redis-server and returns once it replies to PING.
    ///
    /// Throws when redis-server is not installed, exits early or does not
    /// reply within 10 s. A port that another process took between the
    /// check and the server's bind makes it exit, so the start is tried
    /// three times.
    static func start() async throws -> RedisServer {
        guard FileManager.default.isExecutableFile(atPath: executablePath) else {
            throw RedisServerError(
                "redis-server is not installed at \(executablePath), so the Redis store tests cannot run. Install it with scripts/setup.sh (Debian package redis-server)."
            )
        }

        var failures: [String] = []
        for _ in 0..<3 {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("homeport-redis-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let port = try freeLoopbackPort()
            do {
                let process = try launch(port: port, directory: directory)
                let server = RedisServer(port: port, directory: directory, process: process)
                do {
                    try await server.waitUntilAnswering()
                } catch {
                    server.stop()
                    throw error
                }
                return server
            } catch let error as RedisServerError {
                try? FileManager.default.removeItem(at: directory)
                failures.append(error.description)
            }
        }
        throw RedisServerError("redis-server did not start in three attempts:\n" + failures.joined(separator: "\n"))
    }

    private static func launch(port: UInt16, directory: URL) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executablePath)
        process.arguments = [
            "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--dir", directory.path,
            "--logfile", directory.appendingPathComponent("redis.log").path, "--daemonize", "no",
        ]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Sends PING every 10 ms until the server replies PONG.
    private func waitUntilAnswering() async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let exited = process.withLock { $0?.isRunning != true }
            if exited {
                throw RedisServerError("redis-server exited before it replied to PING. Its log (\(logURL.path)):\n\(tail())")
            }
            if (try? ping()) == true { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw RedisServerError("redis-server did not reply to PING within 10 s. Its log (\(logURL.path)):\n\(tail())")
    }

    /// Sends one command on a fresh connection and returns the reply.
    func command(_ arguments: String...) throws -> RedisReply {
        let connection = try RedisConnection(
            host: "127.0.0.1", port: Int(port), connectTimeout: .milliseconds(500), commandTimeout: .seconds(2))
        return try connection.send(arguments.map { Array($0.utf8) })
    }

    private func ping() throws -> Bool {
        try command("PING") == .status("PONG")
    }

    /// Kills the process with SIGKILL and waits for it, keeping the
    /// directory. What Redis wrote to the append-only file survives, since
    /// the file is in the page cache even before its fsync.
    func kill() {
        let killed = process.withLock { process -> Process? in
            defer { process = nil }
            return process
        }
        guard let killed else { return }
        if killed.isRunning {
            Foundation.kill(killed.processIdentifier, SIGKILL)
        }
        waitForProcessExit(killed.processIdentifier)
    }

    /// Starts the server again on the same port and directory after `kill()`,
    /// and returns once it replies to PING (after loading the append-only file).
    func restart() async throws {
        let process = try Self.launch(port: port, directory: directory)
        self.process.withLock { $0 = process }
        try await waitUntilAnswering()
    }

    /// Suspends the process with SIGSTOP. The kernel still accepts
    /// connections to its port, but no reply comes.
    func pause() {
        process.withLock { process in
            if let process { Foundation.kill(process.processIdentifier, SIGSTOP) }
        }
    }

    /// Resumes a paused process with SIGCONT.
    func resume() {
        process.withLock { process in
            if let process { Foundation.kill(process.processIdentifier, SIGCONT) }
        }
    }

    /// Kills the process, which also ends a paused one, and removes the
    /// directory. Calling it again does nothing.
    func stop() {
        kill()
        if !removed.exchange(true, ordering: .relaxed) {
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// Returns the last 20 lines of the log.
    private func tail() -> String {
        let text = (try? String(contentsOf: logURL, encoding: .utf8)) ?? "(no log)"
        return text.split(separator: "\n").suffix(20).joined(separator: "\n")
    }
}
