import Foundation
import Synchronization

/// Drives one node's session API with N persistent connections, each on a
/// thread of its own, and measures throughput and latency: the Homeport side
/// of the throughput table (the Redis side is `redis-benchmark`).
///
/// Every connection creates its own sessions and then loops until the
/// duration ends: `append` posts a turn, `read` gets the last two turns of a
/// session it filled first, `mixed` alternates the two. Each connection runs
/// for the duration from the moment its thread starts. A session receives at
/// most `turnsPerSession` turns before the connection opens a new one (the
/// default policy limits a buffer to 1,024 turns); those creates are counted
/// apart. Samples of the warm-up are dropped.
public enum LoadGenerator {
    public enum Operation: String, Sendable, CaseIterable {
        case append
        case read
        case mixed
    }

    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        public var port: UInt16
        /// Concurrent connections, each with its own thread, 1 to 1,024.
        public var connections = 16
        public var duration: Duration = .seconds(10)
        /// Time at the start whose samples are dropped.
        public var warmup: Duration = .seconds(1)
        public var operation: Operation = .append
        /// Bytes of each appended turn's content, 1 to 1 MiB.
        public var contentBytes = 256
        public var tenant = "load"
        /// Turns appended to one session before the connection opens another, 1 to 1,000.
        public var turnsPerSession = 500

        public init(port: UInt16) {
            self.port = port
        }

        /// - Throws: `ConfigurationError` naming the first invalid field.
        public func validate() throws(ConfigurationError) {
            guard (1...1024).contains(connections) else {
                throw ConfigurationError(field: "connections", detail: "\(connections) is outside 1 to 1024")
            }
            guard duration > .zero, warmup >= .zero, warmup < duration else {
                throw ConfigurationError(field: "warmup", detail: "the warm-up (\(warmup)) must be shorter than the duration (\(duration))")
            }
            guard (1...(1 << 20)).contains(contentBytes) else {
                throw ConfigurationError(field: "contentBytes", detail: "\(contentBytes) is outside 1 to 1048576")
            }
            guard (1...1000).contains(turnsPerSession) else {
                throw ConfigurationError(field: "turnsPerSession", detail: "\(turnsPerSession) is outside 1 to 1000")
            }
            guard TenantID(tenant) != nil else {
                throw ConfigurationError(field: "tenant", detail: "\"\(tenant)\" is not a valid tenant id")
            }
        }
    }

    /// The result of a run: operations completed after the warm-up, their
    /// rate and latency in milliseconds, and the failures.
    public struct Report: Sendable {
        public var configuration: Configuration
        public var operations: Int
        public var measuredSeconds: Double
        public var latency: LatencySummary
        public var sessionsCreated: Int
        public var errors: Int
        public var firstErrors: [String]

        public var operationsPerSecond: Double { measuredSeconds > 0 ? Double(operations) / measuredSeconds : 0 }
    }

    private struct Tally {
        var samples: [Double] = []
        var sessionsCreated = 0
        var errors = 0
        var firstErrors: [String] = []
    }

    /// Runs the load and returns its report once every connection's thread
    /// has finished. Blocking I/O happens only on those threads.
    public static func run(_ configuration: Configuration) async -> Report {
        let tally = Mutex(Tally())

        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let remaining = Mutex(configuration.connections)
            for index in 0..<configuration.connections {
                let thread = Thread {
                    // Each connection runs the full duration from its own
                    // start, so a thread that starts late still measures.
                    let started = ContinuousClock.now
                    let local = drive(
                        configuration, measureFrom: started + configuration.warmup, deadline: started + configuration.duration)
                    tally.withLock { total in
                        total.samples += local.samples
                        total.sessionsCreated += local.sessionsCreated
                        total.errors += local.errors
                        total.firstErrors += local.firstErrors.prefix(max(0, 5 - total.firstErrors.count))
                    }
                    let last = remaining.withLock { count in
                        count -= 1
                        return count == 0
                    }
                    if last { continuation.resume() }
                }
                thread.name = "homeport-load-\(index)"
                thread.start()
            }
        }

        let total = tally.withLock { $0 }
        return Report(
            configuration: configuration, operations: total.samples.count,
            measuredSeconds: (configuration.duration - configuration.warmup).secondsValue, latency: LatencySummary(total.samples),
            sessionsCreated: total.sessionsCreated, errors: total.errors, firstErrors: total.firstErrors)
    }

    /// Runs one connection's loop on the calling thread, which is its own.
    private static func drive(_ configuration: Configuration, measureFrom: ContinuousClock.Instant, deadline: ContinuousClock.Instant)
        -> Tally
    {
        var tally = Tally()
        let connection = KeepAliveHTTPConnection(host: configuration.host, port: configuration.port)
        let content = String(repeating: "x", count: configuration.contentBytes)
        let turnBody = Array(
            JSONValue.object([
                "role": .string("user"), "content": .string(content), "tokens": .integer(Int64(max(1, configuration.contentBytes / 4))),
            ]).serializedBytes())
        var session: (path: String, token: String)?
        var turnsInSession = 0
        var appendNext = configuration.operation != .read

        func record(_ error: String) {
            tally.errors += 1
            if tally.firstErrors.count < 5 { tally.firstErrors.append(error) }
        }

        while ContinuousClock.now < deadline {
            // A new session when none is open or the current one is full.
            if session == nil || turnsInSession >= configuration.turnsPerSession {
                do {
                    session = try createSession(connection, tenant: configuration.tenant)
                    tally.sessionsCreated += 1
                    turnsInSession = 0
                    // Reads need turns to read.
                    if configuration.operation == .read {
                        for _ in 0..<2 {
                            _ = try expect(
                                201,
                                connection.send(
                                    method: "POST", path: session!.path + "/turns", headers: routeHeader(session!), body: turnBody))
                        }
                    }
                } catch {
                    record("\(error)")
                    continue
                }
            }

            let started = ContinuousClock.now
            do {
                if appendNext {
                    _ = try expect(
                        201, connection.send(method: "POST", path: session!.path + "/turns", headers: routeHeader(session!), body: turnBody)
                    )
                    turnsInSession += 1
                } else {
                    _ = try expect(
                        200, connection.send(method: "GET", path: session!.path + "/turns?tail=2", headers: routeHeader(session!)))
                }
                // An operation counts when it started inside the window.
                if started >= measureFrom {
                    tally.samples.append((ContinuousClock.now - started).secondsValue * 1000)
                }
            } catch {
                record("\(error)")
            }
            if configuration.operation == .mixed { appendNext.toggle() }
        }
        connection.close()
        return tally
    }

    private static func routeHeader(_ session: (path: String, token: String)) -> [(String, String)] {
        [(RegionNode.routeHeader, session.token), ("Content-Type", "application/json")]
    }

    private static func createSession(_ connection: KeepAliveHTTPConnection, tenant: String) throws -> (path: String, token: String) {
        let response = try expect(201, connection.send(method: "POST", path: "/v1/tenants/\(tenant)/sessions", body: Array("{}".utf8)))
        guard let body = try? JSONValue.parse(response.body), let id = body["session"]?.stringValue, let token = body["token"]?.stringValue
        else {
            throw LoadConnectionError(
                address: "\(connection.host):\(connection.port)", detail: "the create response has no session or token")
        }
        return ("/v1/tenants/\(tenant)/sessions/\(id)", token)
    }

    private static func expect(
        _ status: Int, _ response: KeepAliveHTTPConnection.Response
    ) throws -> KeepAliveHTTPConnection.Response {
        guard response.status == status else {
            let detail = String(decoding: response.body.prefix(300), as: UTF8.self)
            throw LoadConnectionError(address: "response", detail: "status \(response.status), expected \(status): \(detail)")
        }
        return response
    }
}
