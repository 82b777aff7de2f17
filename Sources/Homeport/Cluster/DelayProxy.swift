import Foundation
import Synchronization

/// A failure to start a delay proxy, with the address at fault.
public struct DelayProxyError: Error, Sendable, CustomStringConvertible {
    public let address: String
    public let detail: String

    public var description: String { "delay proxy \(address): \(detail)" }
}

/// A TCP proxy that delays every byte by a fixed one-way delay in each
/// direction, for a cluster on one machine whose kernel has no netem: etcd
/// members "in" different regions talk to each other through it.
///
/// Each accepted connection gets a connection to the target and, per
/// direction, a reader thread and a writer thread. The reader timestamps
/// each chunk it reads; the writer sends it once the delay has passed since
/// then. So bytes keep their order, the delay does not add up along a
/// stream, and chunks in flight overlap rather than wait for each other. A
/// half-close is passed on after the same delay. Time is the monotonic clock.
///
/// Blocking socket calls run on the proxy's own threads, never on the Swift
/// concurrency pool.
public final class DelayProxy: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// The IPv4 address to listen on; loopback unless chosen otherwise.
        public var listenHost = "127.0.0.1"
        /// 0 picks a free ephemeral port (read it from `start()`).
        public var listenPort: UInt16 = 0
        public var targetHost = "127.0.0.1"
        public var targetPort: UInt16
        public var oneWayDelay: Duration

        public init(targetPort: UInt16, oneWayDelay: Duration) {
            self.targetPort = targetPort
            self.oneWayDelay = oneWayDelay
        }
    }

    public let configuration: Configuration
    /// The listening socket, or nil before `start()` and after `stop()`.
    private let listener = Mutex<Int32?>(nil)
    /// Every socket of every proxied connection, closed by `stop()`.
    private let connections = Mutex<Set<Int32>>([])

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    deinit {
        stop()
    }

    /// Binds, listens and starts accepting on a thread of its own.
    /// Returns the bound port.
    ///
    /// - Throws: `DelayProxyError` when the address is invalid or taken.
    @discardableResult
    public func start() throws(DelayProxyError) -> UInt16 {
        let address = "\(configuration.listenHost):\(configuration.listenPort)"
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw DelayProxyError(address: address, detail: "socket failed: \(Self.lastError)") }
        var reuse: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))

        guard var socketAddress = Self.socketAddress(host: configuration.listenHost, port: configuration.listenPort) else {
            close(descriptor)
            throw DelayProxyError(address: address, detail: "the listen host is not an IPv4 address")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &socketAddress) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                bind(descriptor, raw, length) == 0 && listen(descriptor, 128) == 0 && getsockname(descriptor, raw, &length) == 0
            }
        }
        guard bound else {
            let reason = Self.lastError
            close(descriptor)
            throw DelayProxyError(address: address, detail: "bind or listen failed: \(reason)")
        }

        listener.withLock { $0 = descriptor }
        let thread = Thread { [weak self] in self?.acceptConnections(on: descriptor) }
        thread.name = "delay-proxy-accept"
        thread.start()
        return UInt16(bigEndian: socketAddress.sin_port)
    }

    /// Stops accepting and closes every proxied connection.
    public func stop() {
        if let descriptor = listener.withLock({ state -> Int32? in
            defer { state = nil }
            return state
        }) {
            shutdown(descriptor, Int32(SHUT_RDWR))
            close(descriptor)
        }
        for descriptor in connections.withLock({ state -> Set<Int32> in
            defer { state = [] }
            return state
        }) {
            shutdown(descriptor, Int32(SHUT_RDWR))
        }
    }

    private func acceptConnections(on descriptor: Int32) {
        while true {
            let client = accept(descriptor, nil, nil)
            guard client >= 0 else {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            guard listener.withLock({ $0 == descriptor }), let target = connectToTarget() else {
                close(client)
                continue
            }
            var noDelay: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(target, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
            connections.withLock { $0.formUnion([client, target]) }

            // Each socket is closed once both directions that use it are done.
            let references = Atomic<Int>(2)
            let finish: @Sendable () -> Void = { [weak self] in
                guard references.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 else { return }
                self?.connections.withLock { $0.subtract([client, target]) }
                close(client)
                close(target)
            }
            DelayedPipe(from: client, to: target, delay: configuration.oneWayDelay, finish: finish).start(name: "delay-proxy-up")
            DelayedPipe(from: target, to: client, delay: configuration.oneWayDelay, finish: finish).start(name: "delay-proxy-down")
        }
    }

    private func connectToTarget() -> Int32? {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0, var address = Self.socketAddress(host: configuration.targetHost, port: configuration.targetPort)
        else { return nil }
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard connected else {
            close(descriptor)
            return nil
        }
        return descriptor
    }

    static func socketAddress(host: String, port: UInt16) -> sockaddr_in? {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &address.sin_addr) == 1 else { return nil }
        return address
    }

    static var lastError: String { String(cString: strerror(errno)) }
}

/// One direction of a proxied connection: a reader thread stamps chunks with
/// their arrival time, and a writer thread sends each once the delay has
/// passed.
private final class DelayedPipe: Sendable {
    /// A chunk read from the source, or the end of its stream (nil bytes).
    private struct Chunk {
        var dueNanoseconds: UInt64
        var bytes: [UInt8]?
    }

    private let source: Int32
    private let destination: Int32
    private let delayNanoseconds: UInt64
    private let finish: @Sendable () -> Void
    private let queue = Mutex<[Chunk]>([])
    private let signal = DispatchSemaphore(value: 0)

    init(from source: Int32, to destination: Int32, delay: Duration, finish: @escaping @Sendable () -> Void) {
        self.source = source
        self.destination = destination
        self.delayNanoseconds = UInt64(max(0, delay.wholeMilliseconds)) * 1_000_000
        self.finish = finish
    }

    func start(name: String) {
        let reader = Thread { self.read() }
        reader.name = name + "-read"
        reader.start()
        let writer = Thread { self.write() }
        writer.name = name + "-write"
        writer.start()
    }

    private func read() {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(source, $0.baseAddress, $0.count, 0) }
            if count < 0, errno == EINTR { continue }
            let due = Self.monotonicNanoseconds() + delayNanoseconds
            let chunk = Chunk(dueNanoseconds: due, bytes: count > 0 ? Array(buffer[0..<count]) : nil)
            queue.withLock { $0.append(chunk) }
            signal.signal()
            if count <= 0 { return }
        }
    }

    private func write() {
        defer { finish() }
        while true {
            signal.wait()
            guard let chunk = queue.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else { continue }

            let now = Self.monotonicNanoseconds()
            if chunk.dueNanoseconds > now {
                var remaining = timespec(
                    tv_sec: Int((chunk.dueNanoseconds - now) / 1_000_000_000),
                    tv_nsec: Int((chunk.dueNanoseconds - now) % 1_000_000_000))
                var left = timespec()
                while nanosleep(&remaining, &left) != 0, errno == EINTR {
                    remaining = left
                }
            }

            guard let bytes = chunk.bytes else {
                // The source closed (or failed): pass the half-close on.
                shutdown(destination, Int32(SHUT_WR))
                return
            }
            var offset = 0
            while offset < bytes.count {
                let sent = bytes.withUnsafeBytes { send(destination, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
                if sent < 0, errno == EINTR { continue }
                guard sent > 0 else {
                    shutdown(source, Int32(SHUT_RD))
                    return
                }
                offset += sent
            }
        }
    }

    private static func monotonicNanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
