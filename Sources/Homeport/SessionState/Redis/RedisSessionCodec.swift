/// The formats of the records `RedisSessionStore` keeps in Redis, shared by
/// the Lua scripts (which build and read the headers) and Swift (which builds
/// and reads the rest).
///
/// - Turn: `<epoch> <seq> <content bytes> <JSON>`, the JSON an object with
///   `role`, `content`, `tokens`, `createdAt`, `metadata` and, when set,
///   `idempotencyKey` and `recovered`. The scripts read the header only.
/// - Idempotency key: `<epoch> <seq> <role> <tokens> <content bytes> <hash>`,
///   the stamp of the turn the key first stored and that turn's fingerprint.
/// - Ledger entry: a JSON object whose members are all strings, so that Lua's
///   cjson can rewrite it without touching a number: `name`, `status`,
///   `epoch`, `seq`, `updatedAt`, `arguments` and, when set, `result` and
///   `conflict`. Arguments and result are the caller's JSON as text.
/// - KV-cache ref: `<epoch> <seq> <expires at> <location>`.
/// - Session value: `<epoch> <seq> <updated at> <JSON>`.
///
/// Decoding never traps: a record in another shape throws
/// `RedisError.unexpectedReply` naming the session and the record.
enum RedisSessionCodec {
    // MARK: Session info

    /// Decodes the info a script returns: tenant, home, epoch, last seq,
    /// creation time, buffer bytes, gap flag and turn count.
    static func decodeInfo(_ reply: RedisReply, id: SessionID) throws(RedisError) -> SessionInfo {
        guard let fields = reply.elements, fields.count == 8,
            let tenantText = fields[0].text, let tenant = TenantID(tenantText),
            let home = fields[1].text,
            let epoch = fields[2].text.flatMap({ UInt64($0) }),
            let seq = fields[3].text.flatMap({ UInt64($0) }),
            let created = fields[4].integer,
            let bytes = fields[5].integer,
            let gap = fields[6].text,
            let turnCount = fields[7].integer
        else {
            throw malformed("the meta hash", of: id, reply)
        }
        return SessionInfo(
            id: id, tenant: tenant, home: home, epoch: epoch, lastStamp: SessionStamp(epoch: epoch, seq: seq),
            turnCount: Int(turnCount), bufferBytes: Int(bytes), createdAtMilliseconds: created, replicationGap: gap == "1")
    }

    // MARK: Turns

    /// Returns the JSON part of a turn record: everything but the stamp.
    static func turnBody(
        role: TurnRole, content: String, tokens: Int, createdAtMilliseconds: Int64, metadata: [String: String],
        idempotencyKey: String?, recovered: Bool
    ) -> [UInt8] {
        var fields: [String: JSONValue] = [
            "role": .string(role.rawValue),
            "content": .string(content),
            "tokens": .integer(Int64(tokens)),
            "createdAt": .integer(createdAtMilliseconds),
            "metadata": .object(metadata.mapValues { .string($0) }),
        ]
        if let idempotencyKey { fields["idempotencyKey"] = .string(idempotencyKey) }
        if recovered { fields["recovered"] = .bool(true) }
        return JSONValue.object(fields).serializedBytes()
    }

    /// Returns the whole record of a turn, as the append script would have
    /// stored it.
    static func turnRecord(_ turn: Turn) -> [UInt8] {
        let body = turnBody(
            role: turn.role, content: turn.content, tokens: turn.tokens, createdAtMilliseconds: turn.createdAtMilliseconds,
            metadata: turn.metadata, idempotencyKey: turn.idempotencyKey, recovered: turn.recovered)
        return Array("\(turn.stamp.epoch) \(turn.stamp.seq) \(turn.content.utf8.count) ".utf8) + body
    }

    static func decodeTurn(_ reply: RedisReply, of id: SessionID) throws(RedisError) -> Turn {
        guard case .bulk(let record) = reply, let (header, body) = split(record, headerFields: 3),
            let epoch = UInt64(header[0]), let seq = UInt64(header[1]),
            case .object(let fields)? = try? JSONValue.parse(Array(body)),
            let role = fields["role"]?.stringValue.flatMap(TurnRole.init(rawValue:)),
            let content = fields["content"]?.stringValue,
            let tokens = fields["tokens"]?.integerValue,
            let createdAt = fields["createdAt"]?.integerValue,
            case .object(let metadataFields)? = fields["metadata"]
        else {
            throw malformed("a turn record", of: id, reply)
        }
        var metadata: [String: String] = [:]
        for (name, value) in metadataFields {
            guard let text = value.stringValue else { throw malformed("a turn record", of: id, reply) }
            metadata[name] = text
        }
        return Turn(
            stamp: SessionStamp(epoch: epoch, seq: seq), role: role, content: content, tokens: Int(tokens),
            createdAtMilliseconds: createdAt, metadata: metadata, idempotencyKey: fields["idempotencyKey"]?.stringValue,
            recovered: fields["recovered"]?.boolValue ?? false)
    }

    // MARK: Idempotency keys

    /// Returns the fingerprint that distinguishes a retry from a different turn: role,
    /// tokens, content bytes and the content and metadata hash, the fields
    /// the memory store compares.
    static func fingerprint(role: TurnRole, tokens: Int, content: String, metadata: [String: String]) -> String {
        let hash = SessionRecord.contentHash(content) ^ SessionRecord.metadataHash(metadata)
        return "\(role.rawValue) \(tokens) \(content.utf8.count) \(hash)"
    }

    static func idempotencyRecord(_ record: SessionRecord.IdempotencyRecord) -> [UInt8] {
        let stamp = record.stamp
        return Array(
            "\(stamp.epoch) \(stamp.seq) \(record.role.rawValue) \(record.tokens) \(record.contentBytes) \(record.contentHash)".utf8)
    }

    static func decodeIdempotencyRecord(_ reply: RedisReply, of id: SessionID) throws(RedisError) -> SessionRecord.IdempotencyRecord {
        guard case .bulk(let bytes) = reply else { throw malformed("an idempotency key record", of: id, reply) }
        let fields = bytes.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false).map {
            String(decoding: $0, as: UTF8.self)
        }
        guard fields.count == 6, let epoch = UInt64(fields[0]), let seq = UInt64(fields[1]),
            let role = TurnRole(rawValue: fields[2]), let tokens = Int(fields[3]), let contentBytes = Int(fields[4]),
            let hash = UInt64(fields[5])
        else {
            throw malformed("an idempotency key record", of: id, reply)
        }
        return SessionRecord.IdempotencyRecord(
            stamp: SessionStamp(epoch: epoch, seq: seq), role: role, tokens: tokens, contentBytes: contentBytes, contentHash: hash)
    }

    // MARK: Ledger entries

    static func ledgerRecord(_ entry: LedgerEntry) -> [UInt8] {
        var fields: [String: JSONValue] = [
            "name": .string(entry.name),
            "status": .string(entry.status.rawValue),
            "epoch": .string(String(entry.stamp.epoch)),
            "seq": .string(String(entry.stamp.seq)),
            "updatedAt": .string(String(entry.updatedAtMilliseconds)),
            "arguments": .string(entry.arguments.serializedString()),
        ]
        if let result = entry.result { fields["result"] = .string(result.serializedString()) }
        if let conflict = entry.conflictingStatus { fields["conflict"] = .string(conflict.rawValue) }
        return JSONValue.object(fields).serializedBytes()
    }

    static func decodeLedgerEntry(callID: String, _ reply: RedisReply, of id: SessionID) throws(RedisError) -> LedgerEntry {
        guard case .bulk(let record) = reply, case .object(let fields)? = try? JSONValue.parse(record),
            let name = fields["name"]?.stringValue,
            let status = fields["status"]?.stringValue.flatMap(LedgerStatus.init(rawValue:)),
            let epoch = fields["epoch"]?.stringValue.flatMap({ UInt64($0) }),
            let seq = fields["seq"]?.stringValue.flatMap({ UInt64($0) }),
            let updatedAt = fields["updatedAt"]?.stringValue.flatMap({ Int64($0) }),
            let argumentsText = fields["arguments"]?.stringValue,
            let arguments = try? JSONValue.parse(argumentsText)
        else {
            throw malformed("ledger entry \"\(callID)\"", of: id, reply)
        }
        var result: JSONValue?
        if let resultText = fields["result"] {
            guard let text = resultText.stringValue, let parsed = try? JSONValue.parse(text) else {
                throw malformed("ledger entry \"\(callID)\"", of: id, reply)
            }
            result = parsed
        }
        var conflict: LedgerStatus?
        if let conflictText = fields["conflict"] {
            guard let parsed = conflictText.stringValue.flatMap(LedgerStatus.init(rawValue:)) else {
                throw malformed("ledger entry \"\(callID)\"", of: id, reply)
            }
            conflict = parsed
        }
        return LedgerEntry(
            callID: callID, name: name, arguments: arguments, status: status, result: result, stamp: SessionStamp(epoch: epoch, seq: seq),
            updatedAtMilliseconds: updatedAt, conflictingStatus: conflict)
    }

    // MARK: KV-cache refs

    static func kvCacheRefRecord(_ ref: KVCacheRef) -> [UInt8] {
        Array("\(ref.stamp.epoch) \(ref.stamp.seq) \(ref.expiresAtMilliseconds) \(ref.location)".utf8)
    }

    static func decodeKVCacheRef(block: Int64, _ reply: RedisReply, of id: SessionID) throws(RedisError) -> KVCacheRef {
        guard case .bulk(let record) = reply, let (header, location) = split(record, headerFields: 3),
            let epoch = UInt64(header[0]), let seq = UInt64(header[1]), let expiresAt = Int64(header[2])
        else {
            throw malformed("the KV-cache ref of block \(block)", of: id, reply)
        }
        return KVCacheRef(
            block: block, location: String(decoding: location, as: UTF8.self), stamp: SessionStamp(epoch: epoch, seq: seq),
            expiresAtMilliseconds: expiresAt)
    }

    // MARK: Session values

    static func valueRecord(_ value: SessionValue) -> [UInt8] {
        Array("\(value.stamp.epoch) \(value.stamp.seq) \(value.updatedAtMilliseconds) ".utf8) + value.value.serializedBytes()
    }

    static func decodeValue(name: String, _ reply: RedisReply, of id: SessionID) throws(RedisError) -> SessionValue {
        guard case .bulk(let record) = reply, let (header, body) = split(record, headerFields: 3),
            let epoch = UInt64(header[0]), let seq = UInt64(header[1]), let updatedAt = Int64(header[2]),
            let value = try? JSONValue.parse(Array(body))
        else {
            throw malformed("value \"\(name)\"", of: id, reply)
        }
        return SessionValue(name: name, value: value, stamp: SessionStamp(epoch: epoch, seq: seq), updatedAtMilliseconds: updatedAt)
    }

    // MARK: Helpers

    /// Splits `headerFields` space-separated fields off the front of a
    /// record and returns them with the rest; nil if the record is shorter.
    static func split(_ record: [UInt8], headerFields: Int) -> (header: [String], rest: ArraySlice<UInt8>)? {
        var header: [String] = []
        var start = 0
        while header.count < headerFields {
            guard let space = record[start...].firstIndex(of: UInt8(ascii: " ")) else { return nil }
            header.append(String(decoding: record[start..<space], as: UTF8.self))
            start = space + 1
        }
        return (header, record[start...])
    }

    /// Pairs the elements of a flat field, value array (HGETALL's reply).
    static func pairs(_ reply: RedisReply, of id: SessionID, _ what: String) throws(RedisError) -> [(field: String, value: RedisReply)] {
        guard let elements = reply.elements, elements.count % 2 == 0 else { throw malformed(what, of: id, reply) }
        var pairs: [(field: String, value: RedisReply)] = []
        pairs.reserveCapacity(elements.count / 2)
        for index in stride(from: 0, to: elements.count, by: 2) {
            guard let field = elements[index].text else { throw malformed(what, of: id, reply) }
            pairs.append((field, elements[index + 1]))
        }
        return pairs
    }

    static func malformed(_ what: String, of id: SessionID, _ reply: RedisReply) -> RedisError {
        RedisError(
            .unexpectedReply,
            "\(what) of session \(id) in Redis is not in the format this version writes (\(preview(reply))); was the key written by another program?"
        )
    }

    /// Describes the kind and size of a reply for an error message. It never
    /// includes the reply's bytes, because records contain users' turns and values.
    static func preview(_ reply: RedisReply) -> String {
        switch reply {
        case .bulk(let bytes): "a string of \(bytes.count) bytes"
        case .status: "a status reply"
        case .integer: "an integer"
        case .null: "nil"
        case .array(let elements): "an array of \(elements.count) elements"
        case .error: "an error reply"
        }
    }
}
