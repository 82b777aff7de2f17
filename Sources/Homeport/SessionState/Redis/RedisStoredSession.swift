/// A whole session as `RedisSessionStore` keeps it, loaded into a
/// `SessionRecord` so that takeover and reconcile apply the memory store's
/// rules unchanged, and written back in one transaction.
struct RedisStoredSession {
    var record: SessionRecord

    /// Returns the commands that read the session's keys, in the order `decode` takes
    /// their replies: meta, turns, keys, keyorder, ledger, kv and values.
    static func loadCommands(_ keys: [String]) -> [[[UInt8]]] {
        let meta = keys[0]
        let turns = keys[1]
        let idempotency = keys[2]
        let order = keys[3]
        let ledger = keys[4]
        let refs = keys[5]
        let values = keys[7]
        return [
            command("HGETALL", meta), command("LRANGE", turns, "0", "-1"), command("HGETALL", idempotency),
            command("LRANGE", order, "0", "-1"), command("HGETALL", ledger), command("HGETALL", refs), command("HGETALL", values),
        ]
    }

    /// Builds the session from the replies to `loadCommands`; nil when it has no meta hash.
    static func decode(_ replies: [RedisReply], id: SessionID) throws(RedisError) -> RedisStoredSession? {
        guard replies.count == 7 else { throw RedisError(.unexpectedReply, "loading session \(id) returned \(replies.count) replies") }
        var meta: [String: String] = [:]
        for (field, value) in try RedisSessionCodec.pairs(replies[0], of: id, "the meta hash") {
            meta[field] = value.text
        }
        guard !meta.isEmpty else { return nil }

        guard let tenant = meta["tenant"].flatMap(TenantID.init), let home = meta["home"],
            let epoch = meta["epoch"].flatMap({ UInt64($0) }), let lastSeq = meta["seq"].flatMap({ UInt64($0) }),
            let created = meta["created"].flatMap({ Int64($0) }), let bytes = meta["bytes"].flatMap({ Int($0) })
        else {
            throw RedisSessionCodec.malformed("the meta hash", of: id, replies[0])
        }
        var record = SessionRecord(id: id, tenant: tenant, home: home, epoch: epoch, createdAtMilliseconds: created)
        record.lastSeq = lastSeq
        record.bufferBytes = bytes
        record.replicationGap = meta["gap"] == "1"
        if let adoptedEpoch = meta["adoptedEpoch"].flatMap({ UInt64($0) }), let adoptedSeq = meta["adoptedSeq"].flatMap({ UInt64($0) }) {
            record.adoptedPosition = SessionStamp(epoch: adoptedEpoch, seq: adoptedSeq)
        }

        for turn in replies[1].elements ?? [] {
            record.turns.append(try RedisSessionCodec.decodeTurn(turn, of: id))
        }

        for (key, value) in try RedisSessionCodec.pairs(replies[2], of: id, "the idempotency keys") {
            record.idempotencyKeys[key] = try RedisSessionCodec.decodeIdempotencyRecord(value, of: id)
        }
        record.idempotencyKeyOrder = (replies[3].elements ?? []).compactMap(\.text).filter { record.idempotencyKeys[$0] != nil }

        for (callID, value) in try RedisSessionCodec.pairs(replies[4], of: id, "the ledger") {
            record.ledger[callID] = try RedisSessionCodec.decodeLedgerEntry(callID: callID, value, of: id)
        }
        for (field, value) in try RedisSessionCodec.pairs(replies[5], of: id, "the KV-cache refs") {
            guard let block = Int64(field) else { throw RedisSessionCodec.malformed("the KV-cache ref block \"\(field)\"", of: id, value) }
            record.kvCacheRefs[block] = try RedisSessionCodec.decodeKVCacheRef(block: block, value, of: id)
        }
        for (name, value) in try RedisSessionCodec.pairs(replies[6], of: id, "the values") {
            record.values[name] = try RedisSessionCodec.decodeValue(name: name, value, of: id)
        }
        return RedisStoredSession(record: record)
    }

    /// Returns the commands that replace the session's keys with this state and add
    /// it to the index, to run inside MULTI/EXEC.
    func writeCommands(_ keys: [String], index: String) -> [[[UInt8]]] {
        let record = self.record
        var commands: [[[UInt8]]] = [[Array("DEL".utf8)] + keys.map { Array($0.utf8) }]

        var meta = Self.command(
            "HSET", keys[0], "tenant", record.tenant.rawValue, "home", record.home, "epoch", String(record.epoch), "seq",
            String(record.lastSeq), "created", String(record.createdAtMilliseconds), "bytes", String(record.bufferBytes), "gap",
            record.replicationGap ? "1" : "0")
        if let adopted = record.adoptedPosition {
            meta += Self.command("adoptedEpoch", String(adopted.epoch), "adoptedSeq", String(adopted.seq))
        }
        commands.append(meta)

        Self.appendChunked(&commands, Self.command("RPUSH", keys[1]), record.turns.map { [RedisSessionCodec.turnRecord($0)] })
        Self.appendChunked(
            &commands, Self.command("HSET", keys[2]),
            record.idempotencyKeyOrder.compactMap { key in
                record.idempotencyKeys[key].map { keyRecord in
                    [Array(key.utf8), RedisSessionCodec.idempotencyRecord(keyRecord)]
                }
            })
        Self.appendChunked(&commands, Self.command("RPUSH", keys[3]), record.idempotencyKeyOrder.map { [Array($0.utf8)] })
        Self.appendChunked(
            &commands, Self.command("HSET", keys[4]),
            record.ledger.values.sorted { $0.callID < $1.callID }.map { [Array($0.callID.utf8), RedisSessionCodec.ledgerRecord($0)] })
        let refs = record.kvCacheRefs.values.sorted { $0.block < $1.block }
        Self.appendChunked(
            &commands, Self.command("HSET", keys[5]), refs.map { [Array(String($0.block).utf8), RedisSessionCodec.kvCacheRefRecord($0)] })
        Self.appendChunked(
            &commands, Self.command("ZADD", keys[6]),
            refs.map { [Array(String($0.expiresAtMilliseconds).utf8), Array(String($0.block).utf8)] })
        Self.appendChunked(
            &commands, Self.command("HSET", keys[7]),
            record.values.values.sorted { $0.name < $1.name }.map { [Array($0.name.utf8), RedisSessionCodec.valueRecord($0)] })

        commands.append(Self.command("SADD", index, record.id.rawValue))
        return commands
    }

    /// Appends `head` followed by the items' arguments, 500 items per command.
    private static func appendChunked(_ commands: inout [[[UInt8]]], _ head: [[UInt8]], _ items: [[[UInt8]]]) {
        var start = 0
        while start < items.count {
            let end = min(start + 500, items.count)
            commands.append(head + items[start..<end].flatMap { $0 })
            start = end
        }
    }

    static func command(_ parts: String...) -> [[UInt8]] {
        parts.map { Array($0.utf8) }
    }
}
