import CMicroHTTPD
import Foundation
import Synchronization

/// Settings of one HTTP listener.
public struct HTTPServerConfiguration: Sendable {
    /// IPv4 address to bind; loopback unless the operator chooses otherwise.
    public var host: String = "127.0.0.1"
    /// TCP port; 0 picks a free ephemeral port (read it from `HTTPServer.port`).
    public var port: UInt16 = 0
    /// Bodies larger than this get a 413 without reaching the handler.
    public var maximumBodyBytes: Int = 2 << 20
    /// The body limit of paths under `/internal/`, where regions send each
    /// other replication batches and reconcile tails: a session's snapshot
    /// may hold its whole buffer (16 MiB by default).
    /// NOTE: the body is buffered before its peer signature is checked.
    public var maximumInternalBodyBytes: Int = 64 << 20
    /// A request without a response by then gets a 504.
    public var requestTimeout: Duration = .seconds(30)
    /// Open connections beyond this are refused by libmicrohttpd.
    public var connectionLimit: UInt32 = 1024
    /// Seconds an idle keep-alive connection stays open.
    public var idleTimeoutSeconds: UInt32 = 120

    public init() {}
}

public struct HTTPServerError: Error, CustomStringConvertible {
    public let detail: String
    public var description: String { detail }
}

/// An HTTP/1.1 server on libmicrohttpd whose handlers run in Swift concurrency.
///
/// libmicrohttpd's internal thread reads each request, then suspends the
/// connection while a task runs the async handler; the task stores the
/// response and resumes the connection, and libmicrohttpd sends it. So the
/// handler may await (a forward to another region) without holding a thread.
///
/// Lifecycle: `start()` once, then `shutdown()` once, which stops accepting,
/// waits for in-flight handlers (each bounded by `requestTimeout`) and stops
/// the daemon. libmicrohttpd must not be stopped with suspended connections.
public final class HTTPServer: Sendable {
    public typealias Handler = @Sendable (HTTPRequest) async -> HTTPResponse

    fileprivate let configuration: HTTPServerConfiguration
    fileprivate let handler: Handler
    fileprivate let logger: Logger

    private struct Lifecycle {
        /// The daemon, wrapped so it can sit in a Mutex; nil before start and after shutdown.
        var daemon: DaemonHandle?
        var port: UInt16 = 0
        var listenSocket: Int32 = -1
        var inFlight = 0
        /// Set by `shutdown()`: from then on new requests get 503 at once
        /// instead of being suspended, because libmicrohttpd must not be
        /// stopped while a connection is suspended.
        var stopping = false
        var drainWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// The daemon, the bound port and the count of requests being handled.
    private let lifecycle = Mutex(Lifecycle())

    public init(configuration: HTTPServerConfiguration, logger: Logger, handler: @escaping Handler) {
        self.configuration = configuration
        self.logger = logger
        self.handler = handler
    }

    deinit {
        // Tasks that handle requests hold the server, so none is in flight
        // here and stopping cannot meet a suspended connection.
        if let daemon = lifecycle.withLock({ $0.daemon }) {
            MHD_stop_daemon(daemon.pointer)
        }
    }

    /// The bound port, once started.
    public var port: UInt16 { lifecycle.withLock { $0.port } }

    /// Binds and starts serving; returns the bound port.
    @discardableResult
    public func start() throws(HTTPServerError) -> UInt16 {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = configuration.port.bigEndian
        guard inet_pton(AF_INET, configuration.host, &address.sin_addr) == 1 else {
            throw HTTPServerError(detail: "invalid IPv4 address \"\(configuration.host)\" to listen on")
        }

        let context = Unmanaged.passUnretained(self).toOpaque()
        let flags =
            MHD_USE_INTERNAL_POLLING_THREAD.rawValue | MHD_USE_EPOLL.rawValue | MHD_ALLOW_SUSPEND_RESUME.rawValue
        let daemon: OpaquePointer? = withUnsafePointer(to: &address) { addressPointer in
            addressPointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                var options: [MHD_OptionItem] = [
                    MHD_OptionItem(
                        option: .SOCK_ADDR, value: 0, ptr_value: UnsafeMutableRawPointer(mutating: socketAddress)),
                    MHD_OptionItem(
                        option: .NOTIFY_COMPLETED, value: unsafeBitCast(notifyRequestCompleted, to: Int.self),
                        ptr_value: context),
                    MHD_OptionItem(
                        option: .UNESCAPE_CALLBACK, value: unsafeBitCast(unescapeKeepingNUL, to: Int.self), ptr_value: nil),
                    MHD_OptionItem(option: .CONNECTION_LIMIT, value: Int(configuration.connectionLimit), ptr_value: nil),
                    MHD_OptionItem(option: .CONNECTION_TIMEOUT, value: Int(configuration.idleTimeoutSeconds), ptr_value: nil),
                    MHD_OptionItem(option: .END, value: 0, ptr_value: nil),
                ]
                return options.withUnsafeMutableBufferPointer { buffer in
                    homeport_mhd_start_daemon(
                        flags, configuration.port, accessHandler, context, buffer.baseAddress)
                }
            }
        }
        guard let daemon else {
            throw HTTPServerError(
                detail: "libmicrohttpd could not listen on \(configuration.host):\(configuration.port) (port in use or not permitted)")
        }

        let boundPort = homeport_mhd_bound_port(daemon)
        lifecycle.withLock { state in
            state.daemon = DaemonHandle(pointer: daemon)
            state.port = boundPort
        }
        logger.info("http listener started", ["address": "\(configuration.host):\(boundPort)"])
        return boundPort
    }

    /// Stops accepting, waits until every in-flight response has been sent, and stops the daemon.
    public func shutdown() async {
        let daemon: DaemonHandle? = lifecycle.withLock { state in
            guard let daemon = state.daemon else { return nil }
            state.stopping = true
            state.listenSocket = MHD_quiesce_daemon(daemon.pointer)
            return daemon
        }
        guard let daemon else { return }

        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let drained = lifecycle.withLock { state -> Bool in
                if state.inFlight == 0 { return true }
                state.drainWaiters.append(continuation)
                return false
            }
            if drained { continuation.resume() }
        }

        let listenSocket = lifecycle.withLock { state -> Int32 in
            state.daemon = nil
            return state.listenSocket
        }
        MHD_stop_daemon(daemon.pointer)
        if listenSocket >= 0 { close(listenSocket) }
        logger.info("http listener stopped", ["port": "\(port)"])
    }

    /// Counts a request in flight, or returns false once shutdown has begun.
    fileprivate func tryStartRequest() -> Bool {
        lifecycle.withLock { state in
            guard !state.stopping else { return false }
            state.inFlight += 1
            return true
        }
    }

    fileprivate func requestCompleted() {
        let waiters = lifecycle.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.inFlight -= 1
            guard state.inFlight == 0 else { return [] }
            defer { state.drainWaiters = [] }
            return state.drainWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Runs the handler and returns its response, or a 504 once
    /// `requestTimeout` has passed. A handler that misses the deadline keeps
    /// running in the background (it may be mid-write), but its response is dropped.
    fileprivate func respond(to request: HTTPRequest) async -> HTTPResponse {
        let handler = self.handler
        let timeout = configuration.requestTimeout
        let logger = self.logger
        return await withCheckedContinuation { (continuation: CheckedContinuation<HTTPResponse, Never>) in
            let pending = PendingResponse(continuation)
            let timer = Task {
                try? await Task.sleep(for: timeout)
                guard !Task.isCancelled, let continuation = pending.take() else { return }
                logger.error(
                    "request timed out",
                    ["method": request.method, "path": request.path, "request": request.header(RegionNode.requestIDHeader) ?? "-"])
                continuation.resume(
                    returning: ProblemDetails(
                        status: 504, type: "request-timeout", title: "Request timed out",
                        detail:
                            "the request was not answered within \(timeout); it may or may not have been applied, so retry with the same idempotency key"
                    ).response())
            }
            Task {
                let response = await handler(request)
                timer.cancel()
                pending.take()?.resume(returning: response)
            }
        }
    }
}

/// Percent-decodes a path or query argument in place, as libmicrohttpd's
/// default does, except that `%00` stays encoded. The decoded text reaches
/// Swift as a C string, so a decoded NUL would silently cut the path short
/// (`values/x%00y` would become `values/x`). Kept encoded, it fails validation.
private let unescapeKeepingNUL: @convention(c) (UnsafeMutableRawPointer?, OpaquePointer?, UnsafeMutablePointer<CChar>?) -> Int = {
    _, _, text in
    guard let text else { return 0 }
    func hexValue(_ character: CChar) -> UInt8? {
        switch UInt8(bitPattern: character) {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt8(bitPattern: character) - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt8(bitPattern: character) - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt8(bitPattern: character) - UInt8(ascii: "A") + 10
        default: nil
        }
    }
    var read = 0
    var write = 0
    while text[read] != 0 {
        if text[read] == CChar(UInt8(ascii: "%")), let high = hexValue(text[read + 1]), let low = hexValue(text[read + 2]),
            high != 0 || low != 0
        {
            text[write] = CChar(bitPattern: high << 4 | low)
            read += 3
        } else {
            text[write] = text[read]
            read += 1
        }
        write += 1
    }
    text[write] = 0
    return write
}

/// The continuation of a request's response, taken by whichever comes first:
/// the handler's response or the deadline.
private final class PendingResponse: Sendable {
    private let continuation: Mutex<CheckedContinuation<HTTPResponse, Never>?>

    init(_ continuation: CheckedContinuation<HTTPResponse, Never>) {
        self.continuation = Mutex(continuation)
    }

    func take() -> CheckedContinuation<HTTPResponse, Never>? {
        continuation.withLock { $0.take() }
    }
}

/// An `MHD_Daemon` pointer. libmicrohttpd's daemon calls used here
/// (quiesce, stop, info) are safe from any thread, so the handle may be sent.
private struct DaemonHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// An `MHD_Connection` pointer, sent to the task that responds on it:
/// `MHD_resume_connection` may be called from any thread.
private struct ConnectionHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// The state libmicrohttpd keeps for one request between callbacks.
///
/// `body`, `headers` and `oversized` are touched only on libmicrohttpd's
/// thread; `response` is written by the responding task and read on that
/// thread after the resume, so it sits behind a mutex.
private final class RequestContext: @unchecked Sendable {
    let maximumBodyBytes: Int
    var body: [UInt8] = []
    var oversized = false
    var dispatched = false
    /// True once a task took the request; the server counts it in flight
    /// until libmicrohttpd reports the response sent (or the client gone).
    var inFlight = false
    var headers: [String: String] = [:]
    var query: [String: String] = [:]
    let response = Mutex<HTTPResponse?>(nil)

    init(maximumBodyBytes: Int) {
        self.maximumBodyBytes = maximumBodyBytes
    }
}

private let collectHeader: MHD_KeyValueIterator = { context, _, key, value in
    guard let context, let key else { return .YES }
    let request = Unmanaged<RequestContext>.fromOpaque(context).takeUnretainedValue()
    request.headers[String(cString: key).lowercased()] = value.map { String(cString: $0) } ?? ""
    return .YES
}

private let collectQueryArgument: MHD_KeyValueIterator = { context, _, key, value in
    guard let context, let key else { return .YES }
    let request = Unmanaged<RequestContext>.fromOpaque(context).takeUnretainedValue()
    request.query[String(cString: key)] = value.map { String(cString: $0) } ?? ""
    return .YES
}

private let notifyRequestCompleted: MHD_RequestCompletedCallback = { serverPointer, _, connectionContext, _ in
    guard let connectionContext, let pointer = connectionContext.pointee else { return }
    let context = Unmanaged<RequestContext>.fromOpaque(pointer).takeRetainedValue()
    connectionContext.pointee = nil
    if context.inFlight, let serverPointer {
        Unmanaged<HTTPServer>.fromOpaque(serverPointer).takeUnretainedValue().requestCompleted()
    }
}

/// libmicrohttpd's access handler. It is called once when the headers
/// arrive, once per body chunk, once when the body is complete (we suspend
/// and start the task), and once more after the task resumes the connection
/// (we queue the response).
private let accessHandler: MHD_AccessHandlerCallback = {
    serverPointer, connection, url, method, _, uploadData, uploadDataSize, connectionContext in
    guard let serverPointer, let connection, let connectionContext, let uploadDataSize else { return .NO }
    let server = Unmanaged<HTTPServer>.fromOpaque(serverPointer).takeUnretainedValue()

    // First call for this request: allocate its context.
    guard let contextPointer = connectionContext.pointee else {
        let isInternal = url.map { strncmp($0, "/internal/", 10) == 0 } ?? false
        let limit = isInternal ? server.configuration.maximumInternalBodyBytes : server.configuration.maximumBodyBytes
        connectionContext.pointee = Unmanaged.passRetained(RequestContext(maximumBodyBytes: limit)).toOpaque()
        return .YES
    }
    let context = Unmanaged<RequestContext>.fromOpaque(contextPointer).takeUnretainedValue()

    // A body chunk: keep it unless the body is already over the limit.
    if uploadDataSize.pointee > 0 {
        let count = uploadDataSize.pointee
        if !context.oversized {
            if context.body.count + count > context.maximumBodyBytes {
                context.oversized = true
                context.body = []
            } else if let uploadData {
                uploadData.withMemoryRebound(to: UInt8.self, capacity: count) { bytes in
                    context.body.append(contentsOf: UnsafeBufferPointer(start: bytes, count: count))
                }
            }
        }
        uploadDataSize.pointee = 0
        return .YES
    }

    // The task has answered: send its response.
    if context.dispatched {
        guard let response = context.response.withLock({ $0 }) else { return .NO }
        return queue(response, on: connection)
    }

    // The whole request is here: answer the simple cases at once, or suspend
    // and let a task answer.
    context.dispatched = true
    if context.oversized {
        let problem = ProblemDetails(
            status: 413, type: RequestError.Code.bodyTooLarge.rawValue, title: "Request body too large",
            detail: "the request body is over \(context.maximumBodyBytes) bytes, the limit; send a smaller body")
        return queue(problem.response(), on: connection)
    }

    _ = MHD_get_connection_values(connection, .HEADER_KIND, collectHeader, contextPointer)
    _ = MHD_get_connection_values(connection, .GET_ARGUMENT_KIND, collectQueryArgument, contextPointer)
    let request = HTTPRequest(
        method: method.map { String(cString: $0) } ?? "GET",
        path: url.map { String(cString: $0) } ?? "/",
        query: context.query, headers: context.headers, body: context.body)
    context.body = []

    guard server.tryStartRequest() else {
        let problem = ProblemDetails(
            status: 503, type: "node-stopping", title: "Node stopping",
            detail: "this node is shutting down; retry, at another node if one serves the session")
        return queue(problem.response(headers: [("Connection", "close")]), on: connection)
    }
    MHD_suspend_connection(connection)
    context.inFlight = true
    let handle = ConnectionHandle(pointer: connection)
    let retainedContext = Unmanaged.passRetained(context)
    Task {
        let response = await server.respond(to: request)
        let context = retainedContext.takeRetainedValue()
        context.response.withLock { $0 = response }
        MHD_resume_connection(handle.pointer)
    }
    return .YES
}

private func queue(_ response: HTTPResponse, on connection: OpaquePointer) -> MHD_Result {
    let mhdResponse = response.body.withUnsafeBytes { bytes in
        MHD_create_response_from_buffer(
            bytes.count, UnsafeMutableRawPointer(mutating: bytes.baseAddress), .RESPMEM_MUST_COPY)
    }
    guard let mhdResponse else { return .NO }
    for (name, value) in response.headers {
        _ = MHD_add_response_header(mhdResponse, name, value)
    }
    let result = MHD_queue_response(connection, UInt32(response.status), mhdResponse)
    MHD_destroy_response(mhdResponse)
    return result
}
