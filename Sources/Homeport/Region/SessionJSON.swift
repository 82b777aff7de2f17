/// The JSON shapes of session-local records. Times are milliseconds since
/// the Unix epoch; every record carries its `epoch` and `seq`.
///
/// Replication sends turns, ledger entries and values in these shapes too, so
/// a change to them is a change to the replication wire format, which
/// `ReplicationJSON`'s decoders must accept.
enum SessionJSON {
    static func session(_ info: SessionInfo) -> JSONValue {
        var fields: [String: JSONValue] = [
            "session": .string(info.id.rawValue),
            "tenant": .string(info.tenant.rawValue),
            "home": .string(info.home),
            "epoch": .integer(Int64(info.epoch)),
            "lastSeq": .integer(Int64(info.lastStamp.seq)),
            "turnCount": .integer(Int64(info.turnCount)),
            "bufferBytes": .integer(Int64(info.bufferBytes)),
            "createdAt": .integer(info.createdAtMilliseconds),
        ]
        if info.replicationGap { fields["replicationGap"] = .bool(true) }
        return .object(fields)
    }

    /// Renders a turn without its content or metadata, for append responses.
    /// The caller sent both, and echoing up to 1 MiB of content back would double the cost.
    static func appendedTurn(_ turn: Turn) -> JSONValue {
        var fields = turnFields(turn)
        fields["contentBytes"] = .integer(Int64(turn.content.utf8.count))
        return .object(fields)
    }

    static func turn(_ turn: Turn) -> JSONValue {
        var fields = turnFields(turn)
        fields["content"] = .string(turn.content)
        fields["metadata"] = .object(turn.metadata.mapValues { .string($0) })
        return .object(fields)
    }

    /// Builds the fields that both turn shapes carry.
    private static func turnFields(_ turn: Turn) -> [String: JSONValue] {
        var fields: [String: JSONValue] = [
            "seq": .integer(Int64(turn.stamp.seq)),
            "epoch": .integer(Int64(turn.stamp.epoch)),
            "role": .string(turn.role.rawValue),
            "tokens": .integer(Int64(turn.tokens)),
            "createdAt": .integer(turn.createdAtMilliseconds),
        ]
        if let key = turn.idempotencyKey { fields["idempotencyKey"] = .string(key) }
        if turn.recovered { fields["recovered"] = .bool(true) }
        return fields
    }

    static func ledgerEntry(_ entry: LedgerEntry) -> JSONValue {
        var fields: [String: JSONValue] = [
            "callId": .string(entry.callID),
            "name": .string(entry.name),
            "arguments": entry.arguments,
            "status": .string(entry.status.rawValue),
            "epoch": .integer(Int64(entry.stamp.epoch)),
            "seq": .integer(Int64(entry.stamp.seq)),
            "updatedAt": .integer(entry.updatedAtMilliseconds),
        ]
        if let result = entry.result { fields["result"] = result }
        if let conflicting = entry.conflictingStatus { fields["conflictingStatus"] = .string(conflicting.rawValue) }
        return .object(fields)
    }

    static func kvCacheRef(_ ref: KVCacheRef) -> JSONValue {
        .object([
            "block": .integer(ref.block),
            "location": .string(ref.location),
            "epoch": .integer(Int64(ref.stamp.epoch)),
            "seq": .integer(Int64(ref.stamp.seq)),
            "expiresAt": .integer(ref.expiresAtMilliseconds),
        ])
    }

    static func value(_ value: SessionValue) -> JSONValue {
        .object([
            "name": .string(value.name),
            "value": value.value,
            "epoch": .integer(Int64(value.stamp.epoch)),
            "seq": .integer(Int64(value.stamp.seq)),
            "updatedAt": .integer(value.updatedAtMilliseconds),
        ])
    }
}
