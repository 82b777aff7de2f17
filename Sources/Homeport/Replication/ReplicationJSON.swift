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
        self = try ReplicationJSON.decoding { () throws(RequestError) in
            try ReplicationEntry(reading: JSONObjectReader(json, path: path))
        }
    }

    init(reading object: JSONObjectReader) throws(RequestError) {
        var object = object

        let sessionText = try object.string("session", maximumBytes: .max)
        guard let session = SessionID(sessionText) else {
            throw object.invalidValue("session", "is not a session id (\(SessionID.allowedCharactersDescription))")
        }
        let tenantText = try object.string("tenant", maximumBytes: .max)
        guard let tenant = TenantID(tenantText) else {
            throw object.invalidValue("tenant", "is not a tenant id (\(TenantID.allowedCharactersDescription))")
        }
        let home = try object.string("home", maximumBytes: .max)
        guard !home.isEmpty else { throw object.invalidValue("home", "must name a region, but is empty") }
        let stamp = try ReplicationJSON.stamp(&object)

        let kind: Kind = try ReplicationJSON.enumCase("kind", in: &object)

        let payload: Payload
        switch kind {
        case .sessionCreated:
            payload = .sessionCreated(createdAtMilliseconds: try object.integer("createdAt", in: ReplicationJSON.anyInteger))
        case .turnAppended:
            let turn = try ReplicationJSON.decodeTurn(object.object("turn"))
            try ReplicationJSON.checkStamp(turn.stamp, in: object, key: "turn", matches: stamp)
            payload = .turnAppended(turn)
        case .ledgerEntryWritten:
            let entry = try ReplicationJSON.decodeLedgerEntry(object.object("ledgerEntry"))
            try ReplicationJSON.checkStamp(entry.stamp, in: object, key: "ledgerEntry", matches: stamp)
            payload = .ledgerEntryWritten(entry)
        case .valuePut:
            let value = try ReplicationJSON.decodeValue(object.object("value"))
            try ReplicationJSON.checkStamp(value.stamp, in: object, key: "value", matches: stamp)
            payload = .valuePut(value)
        case .skipped:
            payload = .skipped
        case .snapshot:
            payload = .snapshot(try ReplicationJSON.decodeSnapshot(object.object("snapshot")))
        }
        // Only the fields of this entry's kind were read, so a field of another kind is unknown here.
        try object.finish()

        // Creation is position 0 and every mutation after it has a higher seq.
        switch kind {
        case .sessionCreated:
            guard stamp.seq == 0 else { throw object.invalidValue("seq", "must be 0 for a session-created entry, but is \(stamp.seq)") }
        case .turnAppended, .ledgerEntryWritten, .valuePut, .skipped:
            guard stamp.seq >= 1 else { throw object.invalidValue("seq", "must be 1 or more for a \(kind) entry, but is 0") }
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
        self = try ReplicationJSON.decoding { () throws(RequestError) in
            var object = try JSONObjectReader(json)
            let id = ID(try object.unsignedInteger("batch"))
            var entries: [ReplicationEntry] = []
            for element in try ReplicationJSON.objects("entries", in: &object) {
                entries.append(try ReplicationEntry(reading: element))
            }
            let homeLastSeq = try ReplicationJSON.sessionPositions("homeLastSeq", in: &object)
            try object.finish()
            return ReplicationBatch(id: id, entries: entries, homeLastSeq: homeLastSeq)
        }
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
        self = try ReplicationJSON.decoding { () throws(RequestError) in
            var object = try JSONObjectReader(json)
            let batchID = ReplicationBatch.ID(try object.unsignedInteger("batch"))
            let positions = try ReplicationJSON.sessionPositions("positions", in: &object)
            try object.finish()
            return ReplicationAcknowledgement(batchID: batchID, positions: positions)
        }
    }

    /// Parses and decodes an acknowledgement from a response body.
    /// - Throws: `ReplicationError` with code `malformedJSON` when the body is not JSON.
    public init(jsonBytes: [UInt8]) throws(ReplicationError) {
        try self.init(json: ReplicationJSON.parse(jsonBytes))
    }
}

/// Encoders and decoders of the session records inside replication entries.
///
/// Decoding uses `JSONObjectReader`, whose `RequestError`s `decoding(_:)`
/// converts to `ReplicationError`. It sets no size limits, because the home
/// region enforced the API's limits when it accepted each write. As in the
/// API, a null field counts as absent, except the free-form JSON fields
/// `arguments`, `result` and a value's `value`, where null is data.
enum ReplicationJSON {
    /// The range of a JSON integer without a narrower rule, such as a time in milliseconds.
    static let anyInteger: ClosedRange<Int64> = Int64.min...Int64.max

    static func parse(_ bytes: [UInt8]) throws(ReplicationError) -> JSONValue {
        do {
            return try JSONValue.parse(bytes)
        } catch {
            throw ReplicationError(.malformedJSON, field: nil, "the message is not valid JSON: \(error)")
        }
    }

    /// Runs a decoder and converts the `RequestError` it raises to a `ReplicationError`.
    static func decoding<Decoded>(_ decode: () throws(RequestError) -> Decoded) throws(ReplicationError) -> Decoded {
        do {
            return try decode()
        } catch {
            throw ReplicationError(error)
        }
    }

    /// Rejects a record whose stamp differs from its entry's: the entry of a
    /// single mutation is stamped with that mutation.
    static func checkStamp(
        _ recordStamp: SessionStamp, in entry: JSONObjectReader, key: String, matches entryStamp: SessionStamp
    ) throws(RequestError) {
        guard recordStamp == entryStamp else {
            throw entry.invalidValue(key, "is stamped \(recordStamp), but its entry is stamped \(entryStamp)")
        }
    }

    /// Reads an array field whose elements are objects, each with its path (`turns[2]`).
    static func objects(_ key: String, in object: inout JSONObjectReader) throws(RequestError) -> [JSONObjectReader] {
        let path = object.path(of: key)
        var elements: [JSONObjectReader] = []
        for (index, element) in try object.array(key, maximumCount: .max).enumerated() {
            elements.append(try JSONObjectReader(element, path: "\(path)[\(index)]"))
        }
        return elements
    }

    /// Reads a string field that names a case of `Value`, such as a turn role.
    static func enumCase<Value: RawRepresentable & CaseIterable>(
        _ key: String, in object: inout JSONObjectReader
    ) throws(RequestError) -> Value where Value.RawValue == String {
        let text = try object.string(key, maximumBytes: .max)
        guard let value = Value(rawValue: text) else {
            let known = Value.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            throw object.invalidValue(key, "is \"\(text)\", but must be one of \(known)")
        }
        return value
    }

    /// Reads an object field keyed by session id, such as `positions`, whose
    /// values are non-negative integers.
    static func sessionPositions(_ key: String, in object: inout JSONObjectReader) throws(RequestError) -> [SessionID: UInt64] {
        var members = try object.object(key)
        var positions: [SessionID: UInt64] = [:]
        for name in members.keys {
            guard let session = SessionID(name) else {
                throw RequestError(
                    .invalidValue, field: members.path(of: name),
                    detail:
                        "key \"\(name)\" of field \"\(object.path(of: key))\" is not a session id (\(SessionID.allowedCharactersDescription))"
                )
            }
            positions[session] = try members.unsignedInteger(name)
        }
        return positions
    }

    // Records travel in the API's full shapes (`SessionJSON`), which carry
    // every field a standby needs, including content, metadata and the
    // idempotency key. The decoders below read exactly those fields.

    static func turn(_ turn: Turn) -> JSONValue { SessionJSON.turn(turn) }

    static func ledgerEntry(_ entry: LedgerEntry) -> JSONValue { SessionJSON.ledgerEntry(entry) }

    static func value(_ value: SessionValue) -> JSONValue { SessionJSON.value(value) }

    static func decodeTurn(_ object: JSONObjectReader) throws(RequestError) -> Turn {
        var object = object

        let role: TurnRole = try enumCase("role", in: &object)
        let tokens = Int(try object.integer("tokens", in: 0...Int64(Int.max)))
        let metadata = try object.stringMap("metadata", maximumEntries: .max, maximumBytes: .max)

        let turn = Turn(
            stamp: try stamp(&object), role: role, content: try object.string("content", maximumBytes: .max), tokens: tokens,
            createdAtMilliseconds: try object.integer("createdAt", in: anyInteger), metadata: metadata,
            idempotencyKey: try object.optionalString("idempotencyKey", maximumBytes: .max),
            recovered: try object.optionalBool("recovered") ?? false)
        try object.finish()
        return turn
    }

    static func decodeLedgerEntry(_ object: JSONObjectReader) throws(RequestError) -> LedgerEntry {
        var object = object

        let status: LedgerStatus = try enumCase("status", in: &object)
        var conflictingStatus: LedgerStatus?
        if object.keys.contains("conflictingStatus") {
            conflictingStatus = try enumCase("conflictingStatus", in: &object)
        }

        // A stored null result is sent as `"result": null` and must stay null, not become absent.
        let entry = LedgerEntry(
            callID: try object.string("callId", maximumBytes: .max), name: try object.string("name", maximumBytes: .max),
            arguments: try object.value("arguments"), status: status, result: object.valueIfPresent("result"),
            stamp: try stamp(&object), updatedAtMilliseconds: try object.integer("updatedAt", in: anyInteger),
            conflictingStatus: conflictingStatus)
        try object.finish()
        return entry
    }

    static func decodeValue(_ object: JSONObjectReader) throws(RequestError) -> SessionValue {
        var object = object
        let value = SessionValue(
            name: try object.string("name", maximumBytes: .max), value: try object.value("value"), stamp: try stamp(&object),
            updatedAtMilliseconds: try object.integer("updatedAt", in: anyInteger))
        try object.finish()
        return value
    }

    static func snapshot(_ snapshot: SessionSnapshot) -> JSONValue {
        .object([
            "createdAt": .integer(snapshot.createdAtMilliseconds),
            "turns": .array(snapshot.turns.map(turn)),
            "ledger": .array(snapshot.ledger.map(ledgerEntry)),
            "values": .array(snapshot.values.map(value)),
        ])
    }

    static func decodeSnapshot(_ object: JSONObjectReader) throws(RequestError) -> SessionSnapshot {
        var object = object

        var turns: [Turn] = []
        for element in try objects("turns", in: &object) {
            turns.append(try decodeTurn(element))
        }
        var ledger: [LedgerEntry] = []
        var callIDs: Set<String> = []
        for element in try objects("ledger", in: &object) {
            let entry = try decodeLedgerEntry(element)
            guard callIDs.insert(entry.callID).inserted else {
                throw element.invalidValue("callId", "repeats call id \"\(entry.callID)\"; a snapshot has one entry per call")
            }
            ledger.append(entry)
        }
        var values: [SessionValue] = []
        var names: Set<String> = []
        for element in try objects("values", in: &object) {
            let value = try decodeValue(element)
            guard names.insert(value.name).inserted else {
                throw element.invalidValue("name", "repeats value name \"\(value.name)\"; a snapshot has one value per name")
            }
            values.append(value)
        }

        let snapshot = SessionSnapshot(
            createdAtMilliseconds: try object.integer("createdAt", in: anyInteger), turns: turns, ledger: ledger, values: values)
        try object.finish()
        return snapshot
    }

    static func stamp(_ object: inout JSONObjectReader) throws(RequestError) -> SessionStamp {
        SessionStamp(epoch: try object.unsignedInteger("epoch"), seq: try object.unsignedInteger("seq"))
    }
}
