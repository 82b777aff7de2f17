import Foundation

/// Waits until a process of a local cluster serves. Redis must reply to
/// PING, and etcd must report `"health":"true"` (it has a leader and serves a
/// linearizable read). A peer proxy must accept connections, and `homeport
/// serve` must respond to `GET /healthz`, which it does only after it took
/// its lease and reconciled forward any takeover.
///
/// Probes run every 50 ms. Redis's blocking hiredis calls run on a thread
/// of their own and the HTTP probes on `HTTPClient`'s threads, never on the
/// Swift concurrency pool.
struct ClusterReadiness: Sendable {
    let http: HTTPClient
    let timeout: Duration

    static let pollInterval = Duration.milliseconds(50)

    /// Returns once `record`'s process is ready.
    ///
    /// - Throws: `exitedEarly` when the process exits first, and `notReady`
    ///   when `timeout` passes first. Both name the process, its log with its
    ///   last lines, and what to check.
    func waitUntilReady(_ record: LocalClusterProcess) async throws(LocalClusterError) {
        let deadline = ContinuousClock.now + timeout
        while true {
            guard record.isRunning else {
                throw LocalClusterError(
                    .exitedEarly,
                    "\(record.name) (pid \(record.pid)) exited before it was ready. Its log \(record.logPath) ends with:\n\(ProcessControl.tail(of: record.logPath))\n\(Self.fix(for: record))"
                )
            }
            if await isReady(record) { return }
            guard ContinuousClock.now < deadline else {
                throw LocalClusterError(
                    .notReady,
                    "\(record.name) (pid \(record.pid)) was not ready within \(timeout) (\(Self.probeDescription(record))). Its log \(record.logPath) ends with:\n\(ProcessControl.tail(of: record.logPath))\n\(Self.fix(for: record))"
                )
            }
            try? await Task.sleep(for: Self.pollInterval)
        }
    }

    /// Probes the process once.
    func isReady(_ record: LocalClusterProcess) async -> Bool {
        switch record.role {
        case .redis:
            guard let port = record.ports["redis"] else { return false }
            return await Self.pingRedis(port: port)
        case .etcd:
            guard let port = record.ports["client"] else { return false }
            guard let response = try? await http.send(HTTPRequest(method: "GET", path: "/health"), host: "127.0.0.1", port: port)
            else { return false }
            return response.status == 200 && String(decoding: response.body, as: UTF8.self).contains(#""health":"true""#)
        case .peerProxy:
            // The proxy closes a connection at once while its etcd member is
            // down, so any outcome but a refused connection shows it listens.
            guard let port = record.ports["listen"] else { return false }
            do {
                _ = try await http.send(HTTPRequest(method: "GET", path: "/version"), host: "127.0.0.1", port: port)
                return true
            } catch {
                return error.code != .connectFailed
            }
        case .server:
            guard let port = record.ports["api"] else { return false }
            let response = try? await http.send(HTTPRequest(method: "GET", path: "/healthz"), host: "127.0.0.1", port: port)
            return response?.status == 200
        }
    }

    /// Sends PING on a new connection from a thread of its own, because
    /// hiredis blocks.
    static func pingRedis(port: UInt16) async -> Bool {
        await withCheckedContinuation { continuation in
            let thread = Thread {
                let reply = try? RedisConnection(
                    host: "127.0.0.1", port: Int(port), connectTimeout: .milliseconds(500), commandTimeout: .seconds(1)
                ).send([Array("PING".utf8)])
                continuation.resume(returning: reply == .status("PONG"))
            }
            thread.name = "homeport-cluster-redis-ping"
            thread.start()
        }
    }

    private static func probeDescription(_ record: LocalClusterProcess) -> String {
        let port = { (name: String) in record.ports[name].map(String.init) ?? "?" }
        switch record.role {
        case .redis: return "PING to 127.0.0.1:\(port("redis"))"
        case .etcd: return "GET http://127.0.0.1:\(port("client"))/health"
        case .peerProxy: return "connecting to 127.0.0.1:\(port("listen"))"
        case .server: return "GET http://127.0.0.1:\(port("api"))/healthz"
        }
    }

    /// Returns what to check when a process of `record`'s role is not ready.
    static func fix(for record: LocalClusterProcess) -> String {
        let portTaken =
            "If the log says the address is already in use, another program took the port after the cluster chose it: start the cluster again."
        switch record.role {
        case .redis:
            return "Check that \(record.executablePath) runs (scripts/setup.sh installs Debian's redis-server). \(portTaken)"
        case .etcd:
            return
                "etcd becomes healthy only once a majority of members elected a leader through the peer proxies: read the other etcd members' and the proxies' logs too. \(portTaken)"
        case .peerProxy:
            return "Check that `\(record.executablePath) proxy` runs. \(portTaken)"
        case .server:
            return
                "A server needs its region's Redis and a majority of etcd members, and it reconciles forward before it serves after a takeover; read its log for the error. \(portTaken)"
        }
    }
}
