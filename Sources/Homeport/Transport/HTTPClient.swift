import Foundation
import Synchronization

/// The failure of an HTTP exchange that produced no response.
public struct HTTPClientError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case invalidAddress = "invalid-address"
        case connectFailed = "connect-failed"
        case timedOut = "timed-out"
        case connectionClosed = "connection-closed"
        case malformedResponse = "malformed-response"
    }

    public let code: Code
    public let detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { "\(code.rawValue): \(detail)" }
}

/// A small HTTP/1.1 client with keep-alive connection pools, for calls
/// between regions and from the replay to the nodes.
///
/// Homeport does not use URLSession here. On Linux (Swift 6.3.1) it cost
/// about 0.7 ms per request at p50 and 1.7 ms at p99 against an idle loopback
/// server on a 2-core machine. That alone would use up the 2 ms budget of a
/// local session operation.
///
/// Each exchange runs its blocking socket calls on one of the client's own
/// threads (`BlockingIOThreads`), never on the Swift concurrency pool, and
/// returns through a continuation. At most `maximumConcurrentExchanges` run
/// at once, and the rest wait their turn.
/// Connections are reused per endpoint. A reused connection that the server
/// closed while idle yields no response byte, so the request is sent once
/// more on a new connection. Responses may use Content-Length or chunked
/// transfer coding. No TLS: every call goes to another Homeport node on a
/// private network or loopback.
public final class HTTPClient: Sendable {
    private let threads: BlockingIOThreads
    /// Idle keep-alive connections (socket descriptors) per "host:port".
    private let idle = Mutex<[String: [Int32]]>([:])
    private let maximumIdlePerEndpoint: Int
    private let timeout: Duration

    /// - Parameters:
    ///   - timeout: the longest one socket read or write may wait.
    ///   - maximumConcurrentExchanges: threads, and so requests in flight at
    ///     once. Threads start on demand and exit when idle, so a high bound
    ///     costs nothing until the load needs it. Calls that wait on a
    ///     consensus round trip (about 100 ms) need hundreds in flight to
    ///     sustain a few thousand requests per second.
    ///   - maximumIdlePerEndpoint: idle connections kept per endpoint; more are closed.
    public init(timeout: Duration = .seconds(30), maximumConcurrentExchanges: Int = 256, maximumIdlePerEndpoint: Int = 32) {
        self.timeout = timeout
        self.maximumIdlePerEndpoint = maximumIdlePerEndpoint
        self.threads = BlockingIOThreads(name: "homeport-http-client", threadCount: maximumConcurrentExchanges)
    }

    deinit {
        threads.stop()
        for descriptors in idle.withLock({ $0.values }) {
            for descriptor in descriptors { close(descriptor) }
        }
    }

    /// Sends `request` to `host:port` and returns the whole response.
    public func send(_ request: HTTPRequest, host: String, port: UInt16) async throws(HTTPClientError) -> HTTPResponse {
        let encoded = Self.encode(request, host: host, port: port)
        let outcome: Result<HTTPResponse, HTTPClientError> = await withCheckedContinuation { continuation in
            threads.submit {
                continuation.resume(returning: self.exchange(encoded, host: host, port: port))
            }
        }
        return try outcome.get()
    }

    // MARK: Blocking exchange (runs on one of `threads`)

    private func exchange(_ encoded: [UInt8], host: String, port: UInt16) -> Result<HTTPResponse, HTTPClientError> {
        let endpoint = "\(host):\(port)"

        // The server may have closed a pooled connection while it was idle. If
        // it yields no response byte at all, send once more on a new connection.
        if let descriptor = takeIdle(endpoint) {
            switch roundTrip(encoded, on: descriptor) {
            case .success(let (response, keepAlive)):
                finish(descriptor, endpoint: endpoint, reusable: keepAlive)
                return .success(response)
            case .failure(let failure):
                close(descriptor)
                // Only a connection the server had closed is safe to retry: after
                // a timeout the server may still be applying the request.
                guard failure.nothingReceived, failure.error.code != .timedOut else { return .failure(failure.error) }
            }
        }

        let descriptor: Int32
        switch connect(host: host, port: port) {
        case .success(let connected): descriptor = connected
        case .failure(let error): return .failure(error)
        }
        switch roundTrip(encoded, on: descriptor) {
        case .success(let (response, keepAlive)):
            finish(descriptor, endpoint: endpoint, reusable: keepAlive)
            return .success(response)
        case .failure(let failure):
            close(descriptor)
            return .failure(failure.error)
        }
    }

    private func takeIdle(_ endpoint: String) -> Int32? {
        idle.withLock { $0[endpoint]?.popLast() }
    }

    private func finish(_ descriptor: Int32, endpoint: String, reusable: Bool) {
        guard reusable else {
            close(descriptor)
            return
        }
        let kept = idle.withLock { pool -> Bool in
            guard pool[endpoint, default: []].count < maximumIdlePerEndpoint else { return false }
            pool[endpoint, default: []].append(descriptor)
            return true
        }
        if !kept { close(descriptor) }
    }

    private func connect(host: String, port: UInt16) -> Result<Int32, HTTPClientError> {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        let literal = host == "localhost" ? "127.0.0.1" : host
        guard inet_pton(AF_INET, literal, &address.sin_addr) == 1 else {
            return .failure(HTTPClientError(.invalidAddress, "\(host) is not an IPv4 address"))
        }

        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else {
            return .failure(HTTPClientError(.connectFailed, "socket() failed: \(String(cString: strerror(errno)))"))
        }
        var enabled: Int32 = 1
        setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &enabled, socklen_t(MemoryLayout<Int32>.size))
        var interval = timeval(
            tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))

        let status = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Foundation.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard status == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            return .failure(HTTPClientError(.connectFailed, "cannot connect to \(host):\(port): \(reason)"))
        }
        return .success(descriptor)
    }

    private struct ExchangeFailure: Error {
        let error: HTTPClientError
        /// True when not a single response byte arrived, so the server sent no
        /// response (it may still have seen the request).
        let nothingReceived: Bool
    }

    private func roundTrip(_ encoded: [UInt8], on descriptor: Int32) -> Result<(HTTPResponse, Bool), ExchangeFailure> {
        var written = 0
        while written < encoded.count {
            let result = encoded.withUnsafeBytes { buffer in
                Foundation.send(descriptor, buffer.baseAddress! + written, buffer.count - written, Int32(MSG_NOSIGNAL))
            }
            if result > 0 {
                written += result
                continue
            }
            if result < 0, errno == EINTR { continue }
            let error =
                result < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
                ? HTTPClientError(.timedOut, "sending the request took longer than \(timeout)")
                : HTTPClientError(.connectionClosed, "the connection closed while sending the request")
            return .failure(ExchangeFailure(error: error, nothingReceived: true))
        }

        var reader = ResponseReader(
            deadline: ContinuousClock.now + timeout, descriptor: descriptor, timeout: timeout,
            bodyless: encoded.starts(with: Array("HEAD ".utf8)))
        do {
            let response = try reader.readResponse()
            return .success(response)
        } catch {
            return .failure(ExchangeFailure(error: error, nothingReceived: reader.receivedCount == 0))
        }
    }

    private static func encode(_ request: HTTPRequest, host: String, port: UInt16) -> [UInt8] {
        var target = request.path
        if !request.query.isEmpty {
            let pairs = request.query.sorted { $0.key < $1.key }.map { "\(percentEncode($0.key))=\(percentEncode($0.value))" }
            target += "?" + pairs.joined(separator: "&")
        }
        var head = "\(request.method) \(target) HTTP/1.1\r\nHost: \(host):\(port)\r\n"
        for (name, value) in request.headers
        where !["host", "content-length", "connection", "transfer-encoding"].contains(name.lowercased()) {
            head += "\(name): \(value)\r\n"
        }
        if !request.body.isEmpty || ["POST", "PUT", "PATCH"].contains(request.method) {
            head += "Content-Length: \(request.body.count)\r\n"
        }
        head += "\r\n"
        var bytes = Array(head.utf8)
        bytes.append(contentsOf: request.body)
        return bytes
    }

    private static func percentEncode(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

/// Reads one HTTP/1.1 response from a blocking socket.
private struct ResponseReader {
    static let maximumHeaderBytes = 64 << 10
    static let maximumBodyBytes = 64 << 20

    let descriptor: Int32
    let timeout: Duration
    private var buffer: [UInt8] = []
    private var position = 0
    private var scratch = [UInt8](repeating: 0, count: 128 << 10)
    private(set) var receivedCount = 0

    /// True for the response to a HEAD request, which has headers only.
    let bodyless: Bool

    /// The whole response must have arrived by then, however it trickles in.
    let deadline: ContinuousClock.Instant

    init(deadline: ContinuousClock.Instant, descriptor: Int32, timeout: Duration, bodyless: Bool) {
        self.deadline = deadline
        self.descriptor = descriptor
        self.timeout = timeout
        self.bodyless = bodyless
        buffer.reserveCapacity(16 << 10)
    }

    /// Returns the response and whether the connection may be reused.
    mutating func readResponse() throws(HTTPClientError) -> (HTTPResponse, Bool) {
        let head = try readHead()
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines.first?.split(separator: " ", maxSplits: 2) ?? []
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
            throw HTTPClientError(.malformedResponse, "invalid status line \"\(lines.first?.prefix(80) ?? "")\"")
        }

        var headers: [(name: String, value: String)] = []
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else {
                throw HTTPClientError(.malformedResponse, "invalid header line \"\(line.prefix(80))\"")
            }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        func header(_ name: String) -> String? {
            headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
        }

        let isHTTP10 = statusParts[0] == "HTTP/1.0"
        var keepAlive = !isHTTP10
        if let connection = header("Connection")?.lowercased() {
            keepAlive = connection.contains("keep-alive") || (!connection.contains("close") && !isHTTP10)
        }

        let body: [UInt8]
        if bodyless || status == 204 || status == 304 || (100..<200).contains(status) {
            body = []
        } else if header("Transfer-Encoding")?.lowercased().contains("chunked") == true {
            body = try readChunkedBody()
        } else if let lengthText = header("Content-Length") {
            guard let length = Int(lengthText), length >= 0, length <= Self.maximumBodyBytes else {
                throw HTTPClientError(.malformedResponse, "invalid Content-Length \"\(lengthText.prefix(40))\"")
            }
            body = try readExactly(length)
        } else {
            body = try readToEnd()
            keepAlive = false
        }
        return (HTTPResponse(status: status, headers: headers, body: body), keepAlive)
    }

    private mutating func fill() throws(HTTPClientError) -> Bool {
        if position > 0, position == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            position = 0
        }
        while true {
            guard ContinuousClock.now < deadline else {
                throw HTTPClientError(.timedOut, "the response did not complete within \(timeout)")
            }
            let socket = descriptor
            let count = scratch.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                buffer.append(contentsOf: scratch[0..<count])
                receivedCount += count
                return true
            }
            if count == 0 { return false }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK {
                throw HTTPClientError(.timedOut, "no response within \(timeout)")
            }
            throw HTTPClientError(.connectionClosed, "reading the response failed: \(String(cString: strerror(errno)))")
        }
    }

    private mutating func readHead() throws(HTTPClientError) -> String {
        var searchFrom = position
        while true {
            if buffer.count - position >= 4 {
                var index = max(searchFrom, position)
                while index + 3 < buffer.count {
                    if buffer[index] == 13, buffer[index + 1] == 10, buffer[index + 2] == 13, buffer[index + 3] == 10 {
                        let head = String(decoding: buffer[position..<index], as: UTF8.self)
                        position = index + 4
                        return head
                    }
                    index += 1
                }
                searchFrom = max(position, buffer.count - 3)
            }
            guard buffer.count - position <= Self.maximumHeaderBytes else {
                throw HTTPClientError(.malformedResponse, "the response header is over \(Self.maximumHeaderBytes) bytes")
            }
            guard try fill() else {
                throw HTTPClientError(.connectionClosed, "the connection closed before a complete response header")
            }
        }
    }

    private mutating func readExactly(_ count: Int) throws(HTTPClientError) -> [UInt8] {
        while buffer.count - position < count {
            guard try fill() else {
                throw HTTPClientError(.connectionClosed, "the connection closed after \(buffer.count - position) of \(count) body bytes")
            }
        }
        let bytes = Array(buffer[position..<(position + count)])
        position += count
        return bytes
    }

    private mutating func readLine() throws(HTTPClientError) -> String {
        while true {
            if let newline = buffer[position...].firstIndex(of: 10) {
                let line = String(decoding: buffer[position..<newline], as: UTF8.self)
                position = newline + 1
                return line.hasSuffix("\r") ? String(line.dropLast()) : line
            }
            guard buffer.count - position <= Self.maximumHeaderBytes, try fill() else {
                throw HTTPClientError(.connectionClosed, "the connection closed inside a chunk header")
            }
        }
    }

    private mutating func readChunkedBody() throws(HTTPClientError) -> [UInt8] {
        var body: [UInt8] = []
        while true {
            let sizeLine = try readLine()
            let sizeText = sizeLine.split(separator: ";").first.map(String.init) ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size >= 0,
                body.count + size <= Self.maximumBodyBytes
            else {
                throw HTTPClientError(.malformedResponse, "invalid chunk size \"\(sizeLine.prefix(40))\"")
            }
            if size == 0 {
                // Skip trailer fields up to the empty line.
                while try !readLine().isEmpty {}
                return body
            }
            body.append(contentsOf: try readExactly(size))
            guard try readLine().isEmpty else {
                throw HTTPClientError(.malformedResponse, "a chunk is not followed by CRLF")
            }
        }
    }

    private mutating func readToEnd() throws(HTTPClientError) -> [UInt8] {
        while try fill() {
            guard buffer.count - position <= Self.maximumBodyBytes else {
                throw HTTPClientError(.malformedResponse, "the response body is over \(Self.maximumBodyBytes) bytes")
            }
        }
        let bytes = Array(buffer[position...])
        position = buffer.count
        return bytes
    }
}
