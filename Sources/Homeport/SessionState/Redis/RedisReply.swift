import CHiredis

/// A reply from Redis (RESP2), copied out of hiredis's reply object.
enum RedisReply: Sendable, Equatable {
    /// A bulk string: binary-safe bytes.
    case bulk([UInt8])
    /// A status reply such as `OK` or `QUEUED`.
    case status(String)
    case integer(Int64)
    /// A nil bulk string or a nil array.
    case null
    case array([RedisReply])
    /// An error reply, as the server sent it (for example `NOSCRIPT No matching script`).
    case error(String)

    /// Copies the reply tree that `pointer` refers to. The caller still owns
    /// the hiredis object and frees it.
    init(copying pointer: UnsafePointer<redisReply>) {
        let reply = pointer.pointee
        switch reply.type {
        case REDIS_REPLY_STRING:
            self = .bulk(Self.bytes(reply.str, count: reply.len))
        case REDIS_REPLY_STATUS:
            self = .status(String(decoding: Self.bytes(reply.str, count: reply.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            self = .error(String(decoding: Self.bytes(reply.str, count: reply.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            self = .integer(Int64(reply.integer))
        case REDIS_REPLY_ARRAY:
            var elements: [RedisReply] = []
            elements.reserveCapacity(reply.elements)
            for index in 0..<reply.elements {
                if let element = reply.element[index] {
                    elements.append(RedisReply(copying: element))
                } else {
                    elements.append(.null)
                }
            }
            self = .array(elements)
        default:
            // REDIS_REPLY_NIL, and any type a later hiredis might add.
            self = .null
        }
    }

    private static func bytes(_ pointer: UnsafeMutablePointer<CChar>?, count: Int) -> [UInt8] {
        guard let pointer, count > 0 else { return [] }
        return pointer.withMemoryRebound(to: UInt8.self, capacity: count) { Array(UnsafeBufferPointer(start: $0, count: count)) }
    }

    /// The bytes of a bulk string as UTF-8 text, or of a status reply; nil for other kinds.
    var text: String? {
        switch self {
        case .bulk(let bytes): String(decoding: bytes, as: UTF8.self)
        case .status(let text): text
        case .integer, .null, .array, .error: nil
        }
    }

    /// The value of an integer reply, or of a bulk string holding a decimal integer.
    var integer: Int64? {
        switch self {
        case .integer(let value): value
        case .bulk(let bytes): Int64(String(decoding: bytes, as: UTF8.self))
        case .status, .null, .array, .error: nil
        }
    }

    var elements: [RedisReply]? {
        if case .array(let elements) = self { return elements }
        return nil
    }
}
