import CHiredis
import Foundation

/// One blocking hiredis connection to a Redis server.
///
/// Not thread-safe, like the `redisContext` it wraps: a connection belongs
/// to one thread of `RedisConnectionPool` and is used by nothing else. Every
/// call blocks that thread for at most the command timeout.
///
/// After an I/O error or a timeout the connection is broken for good
/// (`isBroken`): a late reply could otherwise be read as the reply to the
/// next command. The pool then closes it and opens a new one.
final class RedisConnection {
    let host: String
    let port: Int
    private let context: UnsafeMutablePointer<redisContext>
    private(set) var isBroken = false
    private let commandTimeout: Duration

    /// Connects within `connectTimeout` and sets `commandTimeout` as the
    /// socket's send and receive timeout.
    ///
    /// - Throws: `RedisError.connectFailed` naming the address and the reason.
    init(host: String, port: Int, connectTimeout: Duration, commandTimeout: Duration) throws(RedisError) {
        self.host = host
        self.port = port
        self.commandTimeout = commandTimeout
        guard let context = redisConnectWithTimeout(host, Int32(port), Self.timeval(connectTimeout)) else {
            throw RedisError(.connectFailed, "cannot connect to Redis at \(host):\(port): hiredis could not allocate a context")
        }
        guard context.pointee.err == 0 else {
            let reason = Self.errorText(context)
            redisFree(context)
            throw RedisError(.connectFailed, "cannot connect to Redis at \(host):\(port): \(reason)")
        }
        guard redisSetTimeout(context, Self.timeval(commandTimeout)) == REDIS_OK else {
            let reason = Self.errorText(context)
            redisFree(context)
            throw RedisError(.connectFailed, "cannot set the command timeout on the connection to \(host):\(port): \(reason)")
        }
        self.context = context
    }

    deinit {
        redisFree(context)
    }

    /// Sends one command and returns its reply. An error reply is returned,
    /// not thrown.
    func send(_ arguments: [[UInt8]]) throws(RedisError) -> RedisReply {
        try pipeline([arguments])[0]
    }

    /// Sends the commands in one write and returns their replies in order.
    ///
    /// - Throws: `timedOut` or `connectionLost`; the connection is then broken.
    func pipeline(_ commands: [[[UInt8]]]) throws(RedisError) -> [RedisReply] {
        guard !isBroken else {
            throw RedisError(.connectionLost, "the connection to Redis at \(host):\(port) broke earlier")
        }
        for arguments in commands {
            try append(arguments)
        }

        var replies: [RedisReply] = []
        replies.reserveCapacity(commands.count)
        for _ in commands {
            var pointer: UnsafeMutableRawPointer?
            guard redisGetReply(context, &pointer) == REDIS_OK, let pointer else {
                throw failure()
            }
            let reply = pointer.assumingMemoryBound(to: redisReply.self)
            replies.append(RedisReply(copying: reply))
            freeReplyObject(pointer)
        }
        return replies
    }

    /// Returns true, without blocking, when the server has closed the
    /// connection or sent bytes that no command requested. So a server that
    /// restarted while the connection sat idle is noticed before a command is
    /// lost to it.
    func peerHasClosed() -> Bool {
        guard !isBroken else { return true }
        var byte: UInt8 = 0
        let received = recv(context.pointee.fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        if received < 0 {
            return !(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        }
        return true
    }

    /// Queues one command in hiredis's output buffer; nothing is sent yet.
    private func append(_ arguments: [[UInt8]]) throws(RedisError) {
        // hiredis copies the arguments into its buffer, so the pointers need
        // to live only for the call.
        var flat: [UInt8] = []
        flat.reserveCapacity(arguments.reduce(0) { $0 + $1.count })
        var lengths: [Int] = []
        lengths.reserveCapacity(arguments.count)
        for argument in arguments {
            flat.append(contentsOf: argument)
            lengths.append(argument.count)
        }

        let status = flat.withUnsafeBufferPointer { buffer -> Int32 in
            let base = UnsafeRawPointer(buffer.baseAddress ?? UnsafePointer(bitPattern: 1)!).assumingMemoryBound(to: CChar.self)
            var pointers: [UnsafePointer<CChar>?] = []
            pointers.reserveCapacity(arguments.count)
            var offset = 0
            for length in lengths {
                pointers.append(base + offset)
                offset += length
            }
            return pointers.withUnsafeMutableBufferPointer { argv in
                lengths.withUnsafeBufferPointer { argvLengths in
                    redisAppendCommandArgv(context, Int32(arguments.count), argv.baseAddress, argvLengths.baseAddress)
                }
            }
        }
        guard status == REDIS_OK else { throw failure() }
    }

    /// Marks the connection broken and describes hiredis's error.
    private func failure() -> RedisError {
        isBroken = true
        let reason = Self.errorText(context)
        let address = "\(host):\(port)"
        // A receive timeout surfaces as an I/O error with EAGAIN's text.
        if context.pointee.err == REDIS_ERR_IO, reason.contains("temporarily unavailable") || reason.contains("timed out") {
            return RedisError(.timedOut, "Redis at \(address) did not reply within \(commandTimeout)")
        }
        return RedisError(.connectionLost, "the connection to Redis at \(address) failed: \(reason)")
    }

    private static func errorText(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { buffer in
            let bytes = buffer.prefix { $0 != 0 }
            return bytes.isEmpty ? "unknown error" : String(decoding: bytes, as: UTF8.self)
        }
    }

    private static func timeval(_ duration: Duration) -> Foundation.timeval {
        let microseconds = max(duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000, 1000)
        return Foundation.timeval(tv_sec: Int(microseconds / 1_000_000), tv_usec: Int(microseconds % 1_000_000))
    }
}
