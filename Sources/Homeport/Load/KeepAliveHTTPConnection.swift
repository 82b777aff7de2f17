import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A failed request of `KeepAliveHTTPConnection`, naming the address and what failed.
public struct LoadConnectionError: Error, Sendable, CustomStringConvertible {
    public let address: String
    public let detail: String

    public var description: String { "\(address): \(detail)" }
}

/// One persistent HTTP/1.1 connection over a blocking socket, for the load
/// generator: a request is written, and its response read up to its
/// `Content-Length`, on the calling thread. It is not thread-safe: one
/// thread owns it. A connection the server closed is reopened on the next
/// request. Chunked responses are not supported (the Homeport API always
/// sends `Content-Length`).
public final class KeepAliveHTTPConnection {
    public struct Response {
        public var status: Int
        public var headers: [(String, String)]
        public var body: [UInt8]

        public func header(_ name: String) -> String? {
            headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
        }
    }

    public let host: String
    public let port: UInt16
    private let timeout: Duration
    private var socketDescriptor: Int32 = -1
    private var buffer: [UInt8] = []

    public init(host: String, port: UInt16, timeout: Duration = .seconds(10)) {
        self.host = host
        self.port = port
        self.timeout = timeout
    }

    deinit {
        close()
    }

    private var address: String { "\(host):\(port)" }

    public func close() {
        if socketDescriptor >= 0 {
            Glibc.close(socketDescriptor)
            socketDescriptor = -1
        }
        buffer.removeAll()
    }

    /// Sends one request and returns its response.
    ///
    /// - Throws: `LoadConnectionError` when the connection fails, times out
    ///   or the response is malformed; the connection is then closed.
    public func send(method: String, path: String, headers: [(String, String)] = [], body: [UInt8] = []) throws -> Response {
        do {
            if socketDescriptor < 0 { try open() }
            var head = "\(method) \(path) HTTP/1.1\r\nHost: \(address)\r\nContent-Length: \(body.count)\r\n"
            for (name, value) in headers {
                head += "\(name): \(value)\r\n"
            }
            head += "\r\n"
            try write(Array(head.utf8) + body)
            return try readResponse()
        } catch {
            close()
            throw error
        }
    }

    private func open() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw failure("socket() failed: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            Glibc.close(descriptor)
            throw failure("\(host) is not an IPv4 address")
        }

        var enabled: Int32 = 1
        setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &enabled, socklen_t(MemoryLayout<Int32>.size))
        let (seconds, attoseconds) = timeout.components
        var interval = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))

        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(descriptor)
            throw failure("connect failed: \(reason)")
        }
        socketDescriptor = descriptor
    }

    private func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(socketDescriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw failure("send failed: \(String(cString: strerror(errno)))") }
            offset += sent
        }
    }

    /// Reads more bytes into the buffer; throws when the peer closed or the read timed out.
    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        let received = chunk.withUnsafeMutableBytes { recv(socketDescriptor, $0.baseAddress, $0.count, 0) }
        guard received > 0 else {
            throw failure(received == 0 ? "the server closed the connection" : "recv failed: \(String(cString: strerror(errno)))")
        }
        buffer.append(contentsOf: chunk[0..<received])
    }

    private func readResponse() throws -> Response {
        let separator: [UInt8] = [13, 10, 13, 10]
        var headerEnd: Int?
        while headerEnd == nil {
            if buffer.count >= 4 {
                headerEnd = (0...(buffer.count - 4)).first { buffer[$0..<($0 + 4)].elementsEqual(separator) }
            }
            if headerEnd == nil { try fill() }
        }

        let headText = String(decoding: buffer[0..<headerEnd!], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let statusParts = lines.removeFirst().split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            throw failure("malformed status line in the response")
        }
        var headers: [(String, String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        let lengthText = headers.first { $0.0.lowercased() == "content-length" }?.1
        guard let length = Int(lengthText ?? "") else { throw failure("the response has no Content-Length") }

        let bodyStart = headerEnd! + 4
        while buffer.count < bodyStart + length {
            try fill()
        }
        let body = Array(buffer[bodyStart..<(bodyStart + length)])
        buffer.removeFirst(bodyStart + length)
        if headers.contains(where: { $0.0.lowercased() == "connection" && $0.1.lowercased() == "close" }) { close() }
        return Response(status: status, headers: headers, body: body)
    }

    private func failure(_ detail: String) -> LoadConnectionError {
        LoadConnectionError(address: address, detail: detail)
    }
}
