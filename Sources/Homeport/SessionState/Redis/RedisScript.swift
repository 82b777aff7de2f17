import CCrypto

/// A Lua script that Redis runs atomically: no other command runs between
/// its first and last call (Redis documents this for EVAL), so a
/// read-modify-write inside it cannot race.
///
/// Runs by EVALSHA, sending only the SHA-1 of the source. A server that does
/// not have the script cached (it restarted, or `SCRIPT FLUSH` ran) replies
/// `NOSCRIPT`, and the script is sent once in full with EVAL, which caches it.
struct RedisScript: Sendable {
    /// A short name for error messages.
    let name: String
    let source: [UInt8]
    /// The lowercase hex SHA-1 of `source`, as Redis names cached scripts.
    let sha1: [UInt8]

    init(name: String, source: String) {
        self.name = name
        self.source = Array(source.utf8)
        self.sha1 = Self.hexSHA1(self.source)
    }

    /// Runs the script with `keys` as KEYS and `arguments` as ARGV and
    /// returns its reply.
    ///
    /// - Throws: `RedisError.serverError` when the script fails (a Lua error,
    ///   a key of the wrong type, out of memory), and the connection's errors.
    func run(on connection: RedisConnection, keys: [String], arguments: [[UInt8]]) throws(RedisError) -> RedisReply {
        var command: [[UInt8]] = [Array("EVALSHA".utf8), sha1, Array(String(keys.count).utf8)]
        command.reserveCapacity(3 + keys.count + arguments.count)
        command.append(contentsOf: keys.map { Array($0.utf8) })
        command.append(contentsOf: arguments)

        var reply = try connection.send(command)
        if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") {
            command[0] = Array("EVAL".utf8)
            command[1] = source
            reply = try connection.send(command)
        }
        if case .error(let message) = reply {
            throw RedisError(.serverError, "Redis failed the \(name) script: \(message)")
        }
        return reply
    }

    private static func hexSHA1(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 20)
        var length: UInt32 = 0
        let status = bytes.withUnsafeBytes { input in
            digest.withUnsafeMutableBufferPointer { output in
                EVP_Digest(input.baseAddress, input.count, output.baseAddress, &length, EVP_sha1(), nil)
            }
        }
        // EVP_Digest fails only when libcrypto cannot allocate, which no caller could handle.
        precondition(status == 1 && length == 20, "libcrypto SHA-1 failed")
        let hexDigits = Array("0123456789abcdef".utf8)
        return digest.flatMap { [hexDigits[Int($0 >> 4)], hexDigits[Int($0 & 0x0F)]] }
    }
}
