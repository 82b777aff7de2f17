import Foundation
import Synchronization
import Testing
@testable import Homeport

/// A TCP server on 127.0.0.1 that responds to the first request and never to
/// the second, counting the requests it read.
private final class SilentSecondAnswerServer: Sendable {
    let port: UInt16
    private let listener: Int32
    let requestsRead = Atomic<Int>(0)

    init() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.listener = listener
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bind(listener, socketAddress, length) == 0 && listen(listener, 8) == 0
                    && getsockname(listener, socketAddress, &length) == 0
            }
        }
        port = UInt16(bigEndian: address.sin_port)
        guard bound else { throw POSIXError(.EADDRINUSE) }
    }

    /// Serves connections on a thread of its own until `close()`.
    func start() {
        let thread = Thread { [self] in
            while true {
                let connection = accept(listener, nil, nil)
                guard connection >= 0 else { return }
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let count = recv(connection, &buffer, buffer.count, 0)
                    guard count > 0 else { break }
                    let served = requestsRead.add(1, ordering: .relaxed).newValue
                    if served == 1 {
                        let response = Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".utf8)
                        _ = send(connection, response, response.count, 0)
                    }
                }
                Foundation.close(connection)
            }
        }
        thread.start()
    }

    func close() {
        shutdown(listener, Int32(SHUT_RDWR))
        Foundation.close(listener)
    }
}

@Suite struct HTTPClientTests {
    @Test func timedOutRequestIsNotResent() async throws {
        let server = try SilentSecondAnswerServer()
        server.start()
        defer { server.close() }
        let client = HTTPClient(timeout: .milliseconds(300))

        let first = try await client.send(HTTPRequest(method: "GET", path: "/one"), host: "127.0.0.1", port: server.port)
        #expect(first.status == 200)

        // The second request goes out on the pooled connection and gets no response.
        let error = await #expect(throws: HTTPClientError.self) {
            try await client.send(HTTPRequest(method: "POST", path: "/two", body: Array("x".utf8)), host: "127.0.0.1", port: server.port)
        }
        #expect(error?.code == .timedOut)
        #expect(server.requestsRead.load(ordering: .relaxed) == 2)
    }
}

/// Response statuses collected from several tasks.
private final class StatusLog: Sendable {
    private let statuses = Mutex<Set<Int>>([])

    func append(_ status: Int) {
        statuses.withLock { _ = $0.insert(status) }
    }

    var seen: Set<Int> { statuses.withLock { $0 } }
}

@Suite struct HTTPServerTests {
    static func makeServer(timeout: Duration, handler: @escaping HTTPServer.Handler) throws -> HTTPServer {
        var configuration = HTTPServerConfiguration()
        configuration.requestTimeout = timeout
        let server = HTTPServer(configuration: configuration, logger: Logger(label: "test", sink: .discarding), handler: handler)
        try server.start()
        return server
    }

    @Test func slowHandlerGetsTimeoutAtDeadline() async throws {
        let server = try Self.makeServer(timeout: .milliseconds(200)) { _ in
            try? await Task.sleep(for: .seconds(5))
            return HTTPResponse(status: 200)
        }
        let response = try await HTTPClient(timeout: .seconds(10)).send(
            HTTPRequest(method: "GET", path: "/slow"), host: "127.0.0.1", port: server.port)
        await server.shutdown()

        // Without the deadline the handler would return 200 after 5 s, so the
        // 504 shows that the deadline fired first, with no timing assertion.
        #expect(response.status == 504)
    }

    @Test func encodedNULStaysEncodedInPath() async throws {
        let server = try Self.makeServer(timeout: .seconds(5)) { request in
            HTTPResponse(status: 200, body: Array(request.path.utf8))
        }
        let response = try await HTTPClient().send(
            HTTPRequest(method: "GET", path: "/values/x%00y%41"), host: "127.0.0.1", port: server.port)
        await server.shutdown()

        #expect(String(decoding: response.body, as: UTF8.self) == "/values/x%00yA")
    }

    @Test func shutdownUnderKeepAliveLoadStopsCleanly() async throws {
        let server = try Self.makeServer(timeout: .seconds(5)) { _ in
            try? await Task.sleep(for: .milliseconds(2))
            return HTTPResponse(status: 200, body: Array("ok".utf8))
        }
        let port = server.port
        // A long timeout: a busy test machine must not end a client before its first answer.
        let client = HTTPClient(timeout: .seconds(10), maximumConcurrentExchanges: 8)
        let statuses = StatusLog()

        // Eight keep-alive clients keep sending while the server shuts down;
        // each request gets 200 or 503, or its connection is refused.
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    for _ in 0..<200 {
                        guard let response = try? await client.send(HTTPRequest(method: "GET", path: "/"), host: "127.0.0.1", port: port)
                        else { return }
                        statuses.append(response.status)
                    }
                }
            }
            group.addTask {
                // Shut down once requests are flowing, however busy the machine.
                for _ in 0..<1000 where !statuses.seen.contains(200) {
                    try? await Task.sleep(for: .milliseconds(10))
                }
                await server.shutdown()
            }
        }

        let seen = statuses.seen
        #expect(seen.isSubset(of: [200, 503]))
        #expect(seen.contains(200))
    }
}
