/// A failure talking to Redis, below the session store's rules: the
/// connection, a timeout, an error reply or a reply of the wrong shape.
///
/// The store turns every one into `SessionStoreError.storeUnavailable`,
/// naming the session and this error's detail.
struct RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    enum Code: String, Sendable {
        /// The TCP connection could not be opened (refused, unreachable, or
        /// no connection within the connect timeout).
        case connectFailed = "connect-failed"
        /// A command got no complete reply within the command timeout. The
        /// command may or may not have run.
        case timedOut = "timed-out"
        /// The connection broke while a command was sent or its reply read.
        /// The command may or may not have run.
        case connectionLost = "connection-lost"
        /// Redis sent an error reply (out of memory, loading the
        /// dataset, a script error, a key of the wrong type).
        case serverError = "server-error"
        /// The reply, or a record it carries, is not in the shape this
        /// version writes.
        case unexpectedReply = "unexpected-reply"
    }

    let code: Code
    let detail: String

    init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    var description: String { "\(code.rawValue): \(detail)" }
}
