extension RedisSessionStore {
    /// The Redis server's address and the store's connection settings.
    public struct Configuration: Sendable, Equatable {
        /// Host name or address of the Redis server.
        public var host: String
        public var port: Int
        /// The first part of every key the store writes (see
        /// `RedisSessionKeys`), so that several regions or tests can share one
        /// server. 1 to 64 printable ASCII characters without spaces or braces.
        public var keyPrefix: String
        /// Dedicated threads for Redis I/O, each with its own connection,
        /// 1 to 64. A session's operations always run on the same thread.
        public var threadCount: Int
        /// How long opening a connection may take.
        public var connectTimeout: Duration
        /// How long one command may wait for its reply; a script that runs
        /// longer fails with `storeUnavailable` and may still have been applied.
        public var commandTimeout: Duration
        /// How long a thread fails requests at once after a failed connect or
        /// a broken connection, before it tries to connect again.
        public var reconnectDelay: Duration

        public init(
            host: String = "127.0.0.1", port: Int = 6379, keyPrefix: String = "homeport", threadCount: Int = 4,
            connectTimeout: Duration = .seconds(1), commandTimeout: Duration = .seconds(2),
            reconnectDelay: Duration = .milliseconds(100)
        ) {
            self.host = host
            self.port = port
            self.keyPrefix = keyPrefix
            self.threadCount = threadCount
            self.connectTimeout = connectTimeout
            self.commandTimeout = commandTimeout
            self.reconnectDelay = reconnectDelay
        }

        /// - Throws: `ConfigurationError` naming the first invalid field.
        public func validate() throws(ConfigurationError) {
            guard !host.isEmpty, host.utf8.count <= 255, host.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw ConfigurationError(field: "redis.host", detail: "\"\(host)\" is not a host name or address")
            }
            guard (1...65535).contains(port) else {
                throw ConfigurationError(field: "redis.port", detail: "\(port) is not a TCP port (1 to 65535)")
            }
            guard (1...64).contains(keyPrefix.utf8.count),
                keyPrefix.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "{") && $0 != UInt8(ascii: "}") })
            else {
                throw ConfigurationError(
                    field: "redis.keyPrefix",
                    detail: "\"\(keyPrefix)\" must be 1 to 64 printable ASCII characters without spaces or braces")
            }
            guard (1...64).contains(threadCount) else {
                throw ConfigurationError(field: "redis.threadCount", detail: "\(threadCount) is outside 1 to 64")
            }
            let timeouts = [
                ("redis.connectTimeout", connectTimeout), ("redis.commandTimeout", commandTimeout),
            ]
            for (field, timeout) in timeouts where timeout < .milliseconds(1) || timeout > .seconds(600) {
                throw ConfigurationError(field: field, detail: "\(timeout) is outside 1 ms to 600 s")
            }
            guard reconnectDelay >= .zero, reconnectDelay <= .seconds(60) else {
                throw ConfigurationError(field: "redis.reconnectDelay", detail: "\(reconnectDelay) is outside 0 to 60 s")
            }
        }
    }
}
