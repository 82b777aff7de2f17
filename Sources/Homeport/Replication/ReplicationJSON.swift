/// The wire shapes of replication messages, as `JSONValue`.
///
/// Times are milliseconds since the Unix epoch. Epochs and seqs are JSON
/// integers (`Int64`), so they must stay below 2^63. Decoding is strict: a missing,
/// unknown or mistyped field fails with a `ReplicationError` that names it.
///
/// An entry is one object: `session`, `tenant`, `home`, `epoch`, `seq` and
/// `kind`, plus the field of its kind: `createdAt` (session-created), `turn`
/// (turn-appended), `ledgerEntry` (ledger-entry-written), `value` (value-put),
/// `snapshot` (snapshot) or none (skipped).
///
/// NOTE: because unknown fields are rejected, a release that adds a field
/// must reach every region's decoder before any region sends it.
extension ReplicationEntry {
    private static let headerFields: Set<String> = ["session", "tenant", "home", "epoch", "seq", "kind"]

    public var json: JSONValue {
        var fields: [String: JSONValue] = [
            "session": .string(session.rawValue),
            "tenant": .string(tenant.rawValue),
            "home": .string(home),
            "epoch": .integer(Int64(stamp.epoch)),
            "seq": .integer(Int64(stamp.seq)),
            "kind": .string(payload.kind.rawValue),
        ]
        switch payload {
        case .sessionCreated(let createdAtMilliseconds):
            fields["createdAt"] = .integer(createdAtMilliseconds)
        case .turnAppended(let turn):
            fields["turn"] = ReplicationJSON.turn(turn)
        case .ledgerEntryWritten(let entry):
            fields["ledgerEntry"] = ReplicationJSON.ledgerEntry(entry)
        case .valuePut(let value):
            fields["value"] = ReplicationJSON.value(value)
        case .skipped:
            break
        case .snapshot(let snapshot):
            fields["snapshot"] = ReplicationJSON.snapshot(snapshot)
        }
        return .object(fields)
    }

    /// Decodes an entry and checks the invariants listed on the type.
    /// - Parameter path: the entry's path inside a larger message, for errors.
    /// - Throws: `ReplicationError` naming the field at fault.
    public init(json: JSONValue, path: String = "") throws(ReplicationError) {
        let object = try ReplicationJSONObject(json, path: path)

        let sessionText = try object.string("session")
        guard let session = SessionID(sessionText) else {
            throw object.invalid("session", "is not a session id (\(SessionID.allowedCharactersDescription))")
        }
        let tenantText = try object.string("tenant")
        guard let tenant = TenantID(tenantText) else {
            throw object.invalid("tenant", "is not a tenant id (\(TenantID.allowedCharactersDescription))")
        }
        let home = try object.string("home")
        guard !home.isEmpty else { throw object.invalid("home", "must name a region, but is empty") }
        let stamp = SessionStamp(epoch: try object.unsignedInteger("epoch"), seq: try object.unsignedInteger("seq"))

        let kindText = try object.string("kind")
        guard let kind = Kind(rawValue: kindText) else {
            let known = Kind.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            throw object.invalid("kind", "is \"\(kindText)\", but must be one of \(known)")
        }

        let payload: Payload
        switch kind {
        case .sessionCreated:
            try object.rejectUnknownFields(allowed: Self.headerFields.union(["createdAt"]))
            payload = .sessionCreated(createdAtMilliseconds: try object.integer("createdAt"))
        case .turnAppended:
            try object.rejectUnknownFields(allowed: Self.headerFields.union(["turn"]))
            let turn = try ReplicationJSON.decodeTurn(object.object("turn"))
            try ReplicationJSON.checkStamp(turn.stamp, in: object, key: "turn", matches: stamp)
            payload = .turnAppended(turn)
        case .ledgerEntryWritten:
            try object.rejectUnknownFields(allowed: Self.headerFields.union(["ledgerEntry"]))
            let entry = try ReplicationJSON.decodeLedgerEntry(object.object("ledgerEntry"))
            try ReplicationJSON.checkStamp(entry.stamp, in: object, key: "ledgerEntry", matches: stamp)
            payload = .ledgerEntryWritten(entry)
        case .valuePut:
            try object.rejectUnknownFields(allowed: Self.headerFields.union(["value"]))
            let value = try ReplicationJSON.decodeValue(object.object("value"))
            try ReplicationJSON.checkStamp(value.stamp, in: object, key: "value", matches: stamp)
            payload = .valuePut(value)
        case .skipped:
            try object.rejectUnknownFields(allowed: Self.headerFields)
            payload = .skipped
        case .snapshot:
            try object.rejectUnknownFields(allowed: Self.headerFields.union(["snapshot"]))
            payload = .snapshot(try ReplicationJSON.decodeSnapshot(object.object("snapshot")))
        }

        // Creation is position 0 and every mutation after it has a higher seq.
        switch kind {
        case .sessionCreated:
            guard stamp.seq == 0 else { throw object.invalid("seq", "must be 0 for a session-created entry, but is \(stamp.seq)") }
        case .turnAppended, .ledgerEntryWritten, .valuePut, .skipped:
            guard stamp.seq >= 1 else { throw object.invalid("seq", "must be 1 or more for a \(kind) entry, but is 0") }
        case .snapshot:
            break
        }

        self.init(session: session, tenant: tenant, home: home, stamp: stamp, payload: payload)
    }
}

extension ReplicationBatch {
    /// `{"batch": id, "entries": [entry, …], "homeLastSeq": {session: seq, …}}`
    public var json: JSONValue {
        var lastSeqs: [String: JSONValue] = [:]
        for (session, seq) in homeLastSeq {
            lastSeqs[session.rawValue] = .integer(Int64(seq))
        }
        return .object([
            "batch": .integer(Int64(id.rawValue)),
            "entries": .array(entries.map(\.json)),
            "homeLastSeq": .object(lastSeqs),
        ])
    }

    /// - Throws: `ReplicationError` naming the field at fault, such as `entries[3].seq`.
    public init(json: JSONValue) throws(ReplicationError) {
        let object = try ReplicationJSONObject(json, path: "")
        try object.rejectUnknownFields(allowed: ["batch", "entries", "homeLastSeq"])

        let id = ID(try object.unsignedInteger("batch"))
        var entries: [ReplicationEntry] = []
        for element in try object.array("entries") {
            entries.append(try ReplicationEntry(json: element.value, path: element.path))
        }
        let homeLastSeq = try object.sessionPositions("homeLastSeq")
        self.init(id: id, entries: entries, homeLastSeq: homeLastSeq)
    }

    /// Parses and decodes a batch from a request body.
    /// - Throws: `ReplicationError` with code `malformedJSON` when the body is not JSON.
    public init(jsonBytes: [UInt8]) throws(ReplicationError) {
        try self.init(json: ReplicationJSON.parse(jsonBytes))
    }
}

extension ReplicationAcknowledgement {
    /// `{"batch": id, "positions": {session: seq, …}}`
    public var json: JSONValue {
        var members: [String: JSONValue] = [:]
        for (session, seq) in positions {
            members[session.rawValue] = .integer(Int64(seq))
        }
        return .object(["batch": .integer(Int64(batchID.rawValue)), "positions": .object(members)])
    }

    /// - Throws: `ReplicationError` naming the field at fault.
    public init(json: JSONValue) throws(ReplicationError) {
        let object = try ReplicationJSONObject(json, path: "")
        try object.rejectUnknownFields(allowed: ["batch", "positions"])
        self.init(
            batchID: ReplicationBatch.ID(try object.unsignedInteger("batch")), positions: try object.sessionPositions("positions"))
    }

    /// Parses and decodes an acknowledgement from a response body.
    /// - Throws: `ReplicationError` with code `malformedJSON` when the body is not JSON.
    public init(jsonBytes: [UInt8]) throws(ReplicationError) {
        try self.init(json: ReplicationJSON.parse(jsonBytes))
    }
}

/// Encoders and decoders of the session records inside replication entries.
enum ReplicationJSON {
    static func parse(_ bytes: [UInt8]) throws(ReplicationError) -> JSONValue {
        do {
            return try JSONValue.parse(bytes)
        } catch {
            throw ReplicationError(.malformedJSON, field: nil, "the message is not valid JSON: \(error)")
        }
    }

    /// Rejects a record whose stamp differs from its entry's: the entry of a
    /// single mutation is stamped with that mutation.
    static func checkStamp(
        _ recordStamp: SessionStamp, in entry: ReplicationJSONObject, key: String, matches entryStamp: SessionStamp
    ) throws(ReplicationError) {
        guard recordStamp == entryStamp else {
            throw ReplicationError(
                .invalidValue, field: entry.path(of: key),
                "field \"\(entry.path(of: key))\" is stamped \(recordStamp), but its entry is stamped \(entryStamp)")
        }
    }

    static func turn(_ turn: Turn) -> JSONValue {
        var fields: [String: JSONValue] = [
            "epoch": .integer(Int64(turn.stamp.epoch)),
            "seq": .integer(Int64(turn.stamp.seq)),
            "role": .string(turn.role.rawValue),
            "content": .string(turn.content),
            "tokens": .integer(Int64(turn.tokens)),
            "createdAt": .integer(turn.createdAtMilliseconds),
            "metadata": .object(turn.metadata.mapValues { .string($0) }),
        ]
        if let key = turn.idempotencyKey { fields["idempotencyKey"] = .string(key) }
        return .object(fields)
    }

    static func decodeTurn(_ object: ReplicationJSONObject) throws(ReplicationError) -> Turn {
        try object.rejectUnknownFields(allowed: ["epoch", "seq", "role", "content", "tokens", "createdAt", "metadata", "idempotencyKey"])

        let roleText = try object.string("role")
        guard let role = TurnRole(rawValue: roleText) else {
            let known = TurnRole.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            throw object.invalid("role", "is \"\(roleText)\", but must be one of \(known)")
        }
        let tokens = try object.integer("tokens")
        guard tokens >= 0, let tokenCount = Int(exactly: tokens) else {
            throw object.invalid("tokens", "must be 0 or more, but is \(tokens)")
        }

        let metadataObject = try object.object("metadata")
        var metadata: [String: String] = [:]
        for name in metadataObject.keys {
            metadata[name] = try metadataObject.string(name)
        }

        return Turn(
            stamp: try stamp(object), role: role, content: try object.string("content"), tokens: tokenCount,
            createdAtMilliseconds: try object.integer("createdAt"), metadata: metadata,
            idempotencyKey: try object.optionalString("idempotencyKey"))
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
        return .object(fields)
    }

    static func decodeLedgerEntry(_ object: ReplicationJSONObject) throws(ReplicationError) -> LedgerEntry {
        try object.rejectUnknownFields(allowed: ["callId", "name", "arguments", "status", "result", "epoch", "seq", "updatedAt"])

        let statusText = try object.string("status")
        guard let status = LedgerStatus(rawValue: statusText) else {
            let known = LedgerStatus.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            throw object.invalid("status", "is \"\(statusText)\", but must be one of \(known)")
        }

        return LedgerEntry(
            callID: try object.string("callId"), name: try object.string("name"), arguments: try object.value("arguments"),
            status: status, result: object.optionalValue("result"), stamp: try stamp(object),
            updatedAtMilliseconds: try object.integer("updatedAt"))
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

    static func decodeValue(_ object: ReplicationJSONObject) throws(ReplicationError) -> SessionValue {
        try object.rejectUnknownFields(allowed: ["name", "value", "epoch", "seq", "updatedAt"])
        return SessionValue(
            name: try object.string("name"), value: try object.value("value"), stamp: try stamp(object),
            updatedAtMilliseconds: try object.integer("updatedAt"))
    }

    static func snapshot(_ snapshot: SessionSnapshot) -> JSONValue {
        .object([
            "createdAt": .integer(snapshot.createdAtMilliseconds),
            "turns": .array(snapshot.turns.map(turn)),
            "ledger": .array(snapshot.ledger.map(ledgerEntry)),
            "values": .array(snapshot.values.map(value)),
        ])
    }

    static func decodeSnapshot(_ object: ReplicationJSONObject) throws(ReplicationError) -> SessionSnapshot {
        try object.rejectUnknownFields(allowed: ["createdAt", "turns", "ledger", "values"])

        var turns: [Turn] = []
        for element in try object.array("turns") {
            turns.append(try decodeTurn(ReplicationJSONObject(element.value, path: element.path)))
        }
        var ledger: [LedgerEntry] = []
        var callIDs: Set<String> = []
        for element in try object.array("ledger") {
            let entry = try decodeLedgerEntry(ReplicationJSONObject(element.value, path: element.path))
            guard callIDs.insert(entry.callID).inserted else {
                throw ReplicationError(
                    .invalidValue, field: "\(element.path).callId",
                    "field \"\(element.path).callId\" repeats call id \"\(entry.callID)\"; a snapshot has one entry per call")
            }
            ledger.append(entry)
        }
        var values: [SessionValue] = []
        var names: Set<String> = []
        for element in try object.array("values") {
            let value = try decodeValue(ReplicationJSONObject(element.value, path: element.path))
            guard names.insert(value.name).inserted else {
                throw ReplicationError(
                    .invalidValue, field: "\(element.path).name",
                    "field \"\(element.path).name\" repeats value name \"\(value.name)\"; a snapshot has one value per name")
            }
            values.append(value)
        }

        return SessionSnapshot(
            createdAtMilliseconds: try object.integer("createdAt"), turns: turns, ledger: ledger, values: values)
    }

    private static func stamp(_ object: ReplicationJSONObject) throws(ReplicationError) -> SessionStamp {
        SessionStamp(epoch: try object.unsignedInteger("epoch"), seq: try object.unsignedInteger("seq"))
    }
}
