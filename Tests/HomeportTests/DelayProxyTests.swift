import Foundation
import Testing

@testable import Homeport

/// A TCP echo server on loopback, one thread per connection.
final class EchoServer: Sendable {
    let port: UInt16
    private let descriptor: Int32

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = DelayProxy.socketAddress(host: "127.0.0.1", port: 0)!
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, length) == 0 && listen(descriptor, 16) == 0 && getsockname(descriptor, $0, &length) == 0
            }
        }
        guard bound else { throw POSIXError(.EADDRINUSE) }
        self.descriptor = descriptor
        self.port = UInt16(bigEndian: address.sin_port)
        Thread.detachNewThread {
            while true {
                let client = accept(descriptor, nil, nil)
                guard client >= 0 else { return }
                Thread.detachNewThread {
                    var buffer = [UInt8](repeating: 0, count: 4096)
                    while true {
                        let count = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
                        guard count > 0 else { break }
                        _ = buffer.withUnsafeBytes { send(client, $0.baseAddress, count, Int32(MSG_NOSIGNAL)) }
                    }
                    close(client)
                }
            }
        }
    }

    deinit {
        shutdown(descriptor, Int32(SHUT_RDWR))
        close(descriptor)
    }
}

/// A blocking TCP client for the tests.
struct TestConnection {
    let descriptor: Int32

    init(port: UInt16) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = DelayProxy.socketAddress(host: "127.0.0.1", port: port)!
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard connected else { throw POSIXError(.ECONNREFUSED) }
    }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Foundation.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Reads exactly `count` bytes, or fewer if the stream ends.
    func receive(_ count: Int) -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: max(count, 1))
        while result.count < count {
            let read = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, count - result.count, 0) }
            guard read > 0 else { break }
            result += buffer[0..<read]
        }
        return result
    }

    func close() {
        Foundation.close(descriptor)
    }
}

@Suite struct DelayProxyTests {
    static func startProxy(to port: UInt16, delayMilliseconds: Int64) throws -> (DelayProxy, UInt16) {
        let proxy = DelayProxy(configuration: DelayProxy.Configuration(targetPort: port, oneWayDelay: .milliseconds(delayMilliseconds)))
        return (proxy, try proxy.start())
    }

    @Test func roundTripPaysBothDelays() throws {
        let echo = try EchoServer()
        let (proxy, port) = try Self.startProxy(to: echo.port, delayMilliseconds: 40)
        defer { proxy.stop() }
        let connection = try TestConnection(port: port)
        defer { connection.close() }

        let started = ContinuousClock.now
        connection.send(Array("ping".utf8))
        #expect(connection.receive(4) == Array("ping".utf8))
        #expect(ContinuousClock.now - started >= .milliseconds(80))
    }

    @Test func streamKeepsItsOrder() throws {
        let echo = try EchoServer()
        let (proxy, port) = try Self.startProxy(to: echo.port, delayMilliseconds: 5)
        defer { proxy.stop() }
        let connection = try TestConnection(port: port)
        defer { connection.close() }

        var sent: [UInt8] = []
        for index in 0..<2000 {
            let chunk = withUnsafeBytes(of: UInt32(index).bigEndian) { Array($0) }
            connection.send(chunk)
            sent += chunk
        }
        #expect(connection.receive(sent.count) == sent)
    }

    @Test func chunksInFlightDoNotWaitForEachOther() throws {
        let echo = try EchoServer()
        let (proxy, port) = try Self.startProxy(to: echo.port, delayMilliseconds: 100)
        defer { proxy.stop() }
        let connection = try TestConnection(port: port)
        defer { connection.close() }

        // Ten messages 20 ms apart: pipelined they take about 180 + 200 ms;
        // a proxy that held each until the previous one's echo would take 2 s.
        let started = ContinuousClock.now
        for index in 0..<10 {
            connection.send([UInt8(index)])
            Thread.sleep(forTimeInterval: 0.02)
        }
        #expect(connection.receive(10) == Array(0..<10))
        #expect(ContinuousClock.now - started < .seconds(1))
    }

    @Test func halfCloseIsPassedOn() throws {
        let echo = try EchoServer()
        let (proxy, port) = try Self.startProxy(to: echo.port, delayMilliseconds: 10)
        defer { proxy.stop() }
        let connection = try TestConnection(port: port)
        defer { connection.close() }

        connection.send(Array("last words".utf8))
        shutdown(connection.descriptor, Int32(SHUT_WR))
        // The echo arrives, then the end of the stream once the server closes.
        #expect(connection.receive(100) == Array("last words".utf8))
    }

    @Test func closedTargetEndsTheConnection() throws {
        let reservation = try LoopbackPortReservation()
        let (proxy, port) = try Self.startProxy(to: reservation.port, delayMilliseconds: 10)
        defer { proxy.stop() }
        let connection = try TestConnection(port: port)
        defer { connection.close() }

        connection.send(Array("anyone?".utf8))
        #expect(connection.receive(7).isEmpty)
    }

    @Test func invalidListenHostIsRejected() {
        var configuration = DelayProxy.Configuration(targetPort: 1, oneWayDelay: .milliseconds(1))
        configuration.listenHost = "not-an-address"
        #expect(throws: DelayProxyError.self) { try DelayProxy(configuration: configuration).start() }
    }
}
