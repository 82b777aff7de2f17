import Foundation
import Synchronization

@testable import Homeport

/// A failure to start etcd for a test, with what to do about it.
struct EtcdServerError: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// A single-member etcd cluster that a test starts on loopback and stops at
/// the end.
///
/// It runs `/usr/bin/etcd` (Debian package etcd-server, which
/// scripts/setup.sh installs) with a fresh data directory under the
/// temporary directory. Client and peer URLs are on 127.0.0.1 with ports the
/// kernel reported free, so servers of tests that run in parallel do not
/// collide. `stop()`, or the deinitializer as a fallback, kills the process
/// and removes the directory.
final class EtcdServer: Sendable {
    static let executablePath = "/usr/bin/etcd"

    let clientPort: UInt16
    /// The temporary directory with the data directory and etcd's log.
    let directory: URL
    /// The running process, nil once stopped.
    private let process: Mutex<Process?>

    var endpoint: EtcdLinearizableStore.Endpoint {
        EtcdLinearizableStore.Endpoint(host: "127.0.0.1", port: clientPort)
    }

    private init(clientPort: UInt16, directory: URL, process: Process) {
        self.clientPort = clientPort
        self.directory = directory
        self.process = Mutex(process)
    }

    deinit {
        stop()
    }

    /// Starts etcd and returns once it reports itself healthy.
    ///
    /// A heartbeat of 10 ms and an election timeout of 100 ms let the single
    /// member elect itself in about 0.1 s instead of about 1 s, and lower
    /// etcd's minimum lease TTL to 1 s. `maximumRequestBytes` sets
    /// `--max-request-bytes` (etcd's default is 1.5 MiB).
    ///
    /// Throws when etcd is not installed, exits early or is not healthy
    /// within 15 s. A port that another process took between the check and
    /// etcd's bind makes etcd exit, so the start is tried three times.
    static func start(maximumRequestBytes: Int? = nil) async throws -> EtcdServer {
        guard FileManager.default.isExecutableFile(atPath: executablePath) else {
            throw EtcdServerError(
                "etcd is not installed at \(executablePath), so the etcd store tests cannot run. Install it with scripts/setup.sh (Debian package etcd-server)."
            )
        }

        var failures: [String] = []
        for _ in 0..<3 {
            do {
                return try await launch(maximumRequestBytes: maximumRequestBytes)
            } catch let error as EtcdServerError {
                failures.append(error.description)
            }
        }
        throw EtcdServerError("etcd did not start in three attempts:\n" + failures.joined(separator: "\n"))
    }

    private static func launch(maximumRequestBytes: Int?) async throws -> EtcdServer {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("homeport-etcd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let logURL = directory.appendingPathComponent("etcd.log")
        guard FileManager.default.createFile(atPath: logURL.path, contents: nil) else {
            throw EtcdServerError("cannot create the etcd log file \(logURL.path)")
        }

        let clientPort = try freeLoopbackPort()
        let peerPort = try freeLoopbackPort()
        let clientURL = "http://127.0.0.1:\(clientPort)"
        let peerURL = "http://127.0.0.1:\(peerPort)"

        var arguments = [
            "--name", "homeport-test",
            "--data-dir", directory.appendingPathComponent("data").path,
            "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
            "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
            "--initial-cluster", "homeport-test=\(peerURL)", "--initial-cluster-state", "new",
            "--heartbeat-interval", "10", "--election-timeout", "100",
            "--logger", "zap", "--log-level", "warn",
        ]
        if let maximumRequestBytes {
            arguments += ["--max-request-bytes", String(maximumRequestBytes)]
        }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: executablePath)
        process.arguments = arguments
        let log = try FileHandle(forWritingTo: logURL)
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try log.close()

        let server = EtcdServer(clientPort: clientPort, directory: directory, process: process)
        do {
            try await server.waitUntilHealthy(logURL: logURL)
        } catch {
            server.stop()
            throw error
        }
        return server
    }

    /// Polls `GET /health` every 20 ms until etcd reports `"health":"true"`.
    private func waitUntilHealthy(logURL: URL) async throws {
        let client = HTTPClient(timeout: .seconds(1), maximumConcurrentExchanges: 1, maximumIdlePerEndpoint: 1)
        let deadline = ContinuousClock.now + .seconds(15)

        while ContinuousClock.now < deadline {
            let exited = process.withLock { $0?.isRunning != true }
            if exited {
                throw EtcdServerError("etcd exited before it was healthy. Its log (\(logURL.path)):\n\(Self.tail(of: logURL))")
            }
            if let response = try? await client.send(HTTPRequest(method: "GET", path: "/health"), host: "127.0.0.1", port: clientPort),
                response.status == 200, String(decoding: response.body, as: UTF8.self).contains(#""health":"true""#)
            {
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw EtcdServerError("etcd was not healthy within 15 s. Its log (\(logURL.path)):\n\(Self.tail(of: logURL))")
    }

    /// Suspends the process with SIGSTOP. The kernel still accepts
    /// connections to its ports, but no response comes.
    func pause() {
        guard let pid = process.withLock({ $0?.processIdentifier }) else { return }
        kill(pid, SIGSTOP)
        // SIGSTOP is delivered asynchronously: wait until the kernel reports
        // the process stopped, or a request sent next may still be served.
        for _ in 0..<200 {
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            if let state = stat.split(separator: ")").last?.split(separator: " ").first, state == "T" { return }
            usleep(5000)
        }
    }

    /// Resumes a paused process with SIGCONT.
    func resume() {
        process.withLock { process in
            if let process { kill(process.processIdentifier, SIGCONT) }
        }
    }

    /// Kills the process with SIGKILL, which also ends a paused one, waits
    /// for it and removes the directory. Calling it again does nothing.
    func stop() {
        let stopped = process.withLock { process -> Process? in
            defer { process = nil }
            return process
        }
        guard let stopped else { return }

        if stopped.isRunning {
            kill(stopped.processIdentifier, SIGKILL)
        }
        waitForProcessExit(stopped.processIdentifier)
        try? FileManager.default.removeItem(at: directory)
    }

    /// Returns the last 20 lines of the log.
    private static func tail(of logURL: URL) -> String {
        let text = (try? String(contentsOf: logURL, encoding: .utf8)) ?? "(no log)"
        return text.split(separator: "\n").suffix(20).joined(separator: "\n")
    }
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago: the kernel
/// picks it for a socket bound to port 0, and the socket is closed again.
func freeLoopbackPort() throws -> UInt16 {
    let reservation = try LoopbackPortReservation()
    return reservation.port
}

/// A TCP socket bound to a port on 127.0.0.1 without listening. The port
/// stays taken while the reservation lives, and a connection to it is
/// refused, so it serves as a closed port that no other test can open.
final class LoopbackPortReservation: Sendable {
    let port: UInt16
    private let descriptor: Int32

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw POSIXError(.EMFILE) }

        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bind(descriptor, socketAddress, length) == 0 && getsockname(descriptor, socketAddress, &length) == 0
            }
        }
        guard bound else {
            close(descriptor)
            throw POSIXError(.EADDRINUSE)
        }
        self.descriptor = descriptor
        self.port = UInt16(bigEndian: address.sin_port)
    }

    deinit {
        close(descriptor)
    }
}
