import Foundation
import Synchronization

/// A TCP relay on 127.0.0.1 in front of a local server, which a test cuts to
/// simulate a network partition between a client and a server that keeps
/// running.
///
/// While cut, the proxy closes every relayed connection and each new
/// connection as soon as it accepts it, so a client sees its connections
/// drop. Each connection is relayed by two threads, one per direction.
final class PartitionProxy: Sendable {
    let port: UInt16
    private let targetPort: UInt16
    private let listener: Int32

    private struct State {
        var isCut = false
        var isClosed = false
        /// The sockets of every open relayed connection, and how many of its
        /// two directions have ended.
        var connections: [Int: (client: Int32, server: Int32, finishedDirections: Int)] = [:]
        var nextConnectionID = 0
    }

    /// The cut switch and the open connections. A connection's sockets are
    /// closed under this lock once both relay threads have ended, so `cut()`
    /// never shuts down a closed descriptor.
    private let state = Mutex(State())
    /// Signalled when the accept thread returns, so the listener is closed only after that.
    private let acceptStopped = DispatchSemaphore(value: 0)

    /// Listens on an ephemeral port of 127.0.0.1 and relays to `targetPort` there.
    init(targetPort: UInt16) throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard listener >= 0 else { throw POSIXError(.EMFILE) }

        var address = Self.loopbackAddress(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listening = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bind(listener, socketAddress, length) == 0 && listen(listener, 64) == 0
                    && getsockname(listener, socketAddress, &length) == 0
            }
        }
        guard listening else {
            Foundation.close(listener)
            throw POSIXError(.EADDRINUSE)
        }

        self.listener = listener
        self.targetPort = targetPort
        self.port = UInt16(bigEndian: address.sin_port)

        let thread = Thread { [self] in
            acceptConnections()
            acceptStopped.signal()
        }
        thread.name = "partition-proxy-accept"
        thread.start()
    }

    /// Starts the partition: drops every relayed connection and every new one.
    func cut() {
        state.withLock { state in
            state.isCut = true
            for (client, server, _) in state.connections.values {
                shutdown(client, Int32(SHUT_RDWR))
                shutdown(server, Int32(SHUT_RDWR))
            }
        }
    }

    /// Ends the partition: new connections are relayed again.
    func restore() {
        state.withLock { $0.isCut = false }
    }

    /// Stops listening and drops every connection.
    func close() {
        cut()
        let wasClosed = state.withLock { state in
            defer { state.isClosed = true }
            return state.isClosed
        }
        guard !wasClosed else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        acceptStopped.wait()
        Foundation.close(listener)
    }

    deinit {
        close()
    }

    private func acceptConnections() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else {
                if errno == EINTR { continue }
                return
            }

            guard let server = connectToTarget() else {
                Foundation.close(client)
                continue
            }

            // Checked while registering, so a connection accepted just before
            // a cut is dropped too.
            let id = state.withLock { state -> Int? in
                guard !state.isCut else { return nil }
                state.nextConnectionID += 1
                state.connections[state.nextConnectionID] = (client, server, 0)
                return state.nextConnectionID
            }
            guard let id else {
                Foundation.close(client)
                Foundation.close(server)
                continue
            }
            for (source, destination) in [(client, server), (server, client)] {
                let thread = Thread { [self] in
                    relay(from: source, to: destination)
                    finishRelay(id: id)
                }
                thread.name = "partition-proxy-relay"
                thread.start()
            }
        }
    }

    private func connectToTarget() -> Int32? {
        let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard server >= 0 else { return nil }

        var address = Self.loopbackAddress(port: targetPort)
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard connected else {
            Foundation.close(server)
            return nil
        }
        return server
    }

    /// Copies bytes until either side closes, then shuts down both sockets so
    /// that the other direction ends too.
    private func relay(from source: Int32, to destination: Int32) {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        relaying: while true {
            let count = recv(source, &buffer, buffer.count, 0)
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }

            var written = 0
            while written < count {
                let result = buffer.withUnsafeBytes { bytes in
                    send(destination, bytes.baseAddress! + written, count - written, Int32(MSG_NOSIGNAL))
                }
                if result < 0, errno == EINTR { continue }
                guard result > 0 else { break relaying }
                written += result
            }
        }
        shutdown(source, Int32(SHUT_RDWR))
        shutdown(destination, Int32(SHUT_RDWR))
    }

    /// Closes both sockets once both directions have ended.
    private func finishRelay(id: Int) {
        state.withLock { state in
            guard var connection = state.connections[id] else { return }
            connection.finishedDirections += 1
            guard connection.finishedDirections == 2 else {
                state.connections[id] = connection
                return
            }
            state.connections[id] = nil
            Foundation.close(connection.client)
            Foundation.close(connection.server)
        }
    }

    private static func loopbackAddress(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        return address
    }
}
