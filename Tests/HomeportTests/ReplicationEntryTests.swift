import Testing

@testable import Homeport

@Suite struct ReplicationEntryTests {
    static let session = SessionID("session-a")!
    static let tenant = TenantID("acme")!

    static func stamp(_ seq: UInt64) -> SessionStamp {
        SessionStamp(epoch: 2, seq: seq)
    }

    static let turn = Turn(
        stamp: stamp(3), role: .assistant, content: "line one\nline \"two\" \u{1F600}", tokens: 7, createdAtMilliseconds: 1_700,
        metadata: ["model": "small", "region": "us-east"], idempotencyKey: "key-1")

    static let ledgerEntry = LedgerEntry(
        callID: "call-1", name: "search", arguments: .object(["query": .string("weather"), "limit": .integer(3)]),
        status: .succeeded, result: .array([.number(1.5), .null, .bool(false)]), stamp: stamp(4), updatedAtMilliseconds: 1_800)

    static let value = SessionValue(
        name: "mode", value: .object(["draft": .bool(true)]), stamp: stamp(5), updatedAtMilliseconds: 1_900)

    static func entry(_ seq: UInt64, _ payload: ReplicationEntry.Payload) -> ReplicationEntry {
        ReplicationEntry(session: session, tenant: tenant, home: "us-east", stamp: stamp(seq), payload: payload)
    }

    static let everyKind: [ReplicationEntry] = [
        entry(0, .sessionCreated(createdAtMilliseconds: 1_600)),
        entry(3, .turnAppended(turn)),
        entry(4, .ledgerEntryWritten(ledgerEntry)),
        entry(
            4,
            .ledgerEntryWritten(
                LedgerEntry(
                    callID: "call-2", name: "fetch", arguments: .null, status: .requested, result: nil, stamp: stamp(4),
                    updatedAtMilliseconds: 0))),
        entry(5, .valuePut(value)),
        entry(6, .skipped),
        entry(
            6,
            .snapshot(
                SessionSnapshot(
                    createdAtMilliseconds: 1_600,
                    turns: [
                        turn,
                        Turn(
                            stamp: stamp(6), role: .tool, content: "", tokens: 0, createdAtMilliseconds: 2_000, metadata: [:],
                            idempotencyKey: nil),
                    ],
                    ledger: [ledgerEntry], values: [value]))),
        entry(0, .snapshot(SessionSnapshot(createdAtMilliseconds: 1_600, turns: [], ledger: [], values: []))),
    ]

    @Test func everyKindRoundTrips() throws {
        #expect(Set(Self.everyKind.map(\.payload.kind)) == Set(ReplicationEntry.Kind.allCases))
        for entry in Self.everyKind {
            let bytes = entry.json.serializedBytes()
            let decoded = try ReplicationEntry(json: JSONValue.parse(bytes))
            #expect(decoded == entry, "\(entry.payload.kind) entry")
        }
    }

    @Test func batchAndAcknowledgementRoundTrip() throws {
        let batch = ReplicationBatch(
            id: ReplicationBatch.ID(42), entries: Self.everyKind, homeLastSeq: [Self.session: 9, SessionID("session-b")!: 1])
        let acknowledgement = ReplicationAcknowledgement(batchID: ReplicationBatch.ID(42), positions: [Self.session: 6])

        #expect(try ReplicationBatch(jsonBytes: batch.json.serializedBytes()) == batch)
        #expect(try ReplicationAcknowledgement(jsonBytes: acknowledgement.json.serializedBytes()) == acknowledgement)
    }

    /// Returns the entry for `kind` as a JSON object, changed by `edit`.
    static func editedJSON(_ kind: ReplicationEntry.Kind, _ edit: (inout [String: JSONValue]) -> Void) -> JSONValue {
        let entry = everyKind.first { $0.payload.kind == kind }!
        guard case .object(var fields) = entry.json else { fatalError("an entry encodes as an object") }
        edit(&fields)
        return .object(fields)
    }

    /// Replaces `field` of the nested object `key`.
    static func editNested(_ fields: inout [String: JSONValue], _ key: String, _ field: String, _ value: JSONValue?) {
        guard case .object(var nested) = fields[key] else { return }
        nested[field] = value
        fields[key] = .object(nested)
    }

    /// A malformed entry and the error it must raise. Described by its name
    /// alone, because the JSON makes test output unreadable.
    struct MalformedCase: CustomTestStringConvertible, Sendable {
        var scenario: String
        var json: JSONValue
        var code: ReplicationError.Code
        var field: String

        init(_ scenario: String, _ json: JSONValue, _ code: ReplicationError.Code, _ field: String) {
            self.scenario = scenario
            self.json = json
            self.code = code
            self.field = field
        }

        var testDescription: String { scenario }
    }

    @Test(arguments: [
        MalformedCase("missing session", editedJSON(.skipped) { $0["session"] = nil }, .missingField, "session"),
        MalformedCase("bad session id", editedJSON(.skipped) { $0["session"] = .string("a/b") }, .invalidValue, "session"),
        MalformedCase("bad tenant", editedJSON(.skipped) { $0["tenant"] = .string("Acme") }, .invalidValue, "tenant"),
        MalformedCase("empty home", editedJSON(.skipped) { $0["home"] = .string("") }, .invalidValue, "home"),
        MalformedCase("negative seq", editedJSON(.skipped) { $0["seq"] = .integer(-1) }, .invalidValue, "seq"),
        MalformedCase("seq as string", editedJSON(.skipped) { $0["seq"] = .string("6") }, .invalidValue, "seq"),
        MalformedCase("skipped at 0", editedJSON(.skipped) { $0["seq"] = .integer(0) }, .invalidValue, "seq"),
        MalformedCase("created at 1", editedJSON(.sessionCreated) { $0["seq"] = .integer(1) }, .invalidValue, "seq"),
        MalformedCase("unknown kind", editedJSON(.skipped) { $0["kind"] = .string("deleted") }, .invalidValue, "kind"),
        MalformedCase("unknown field", editedJSON(.skipped) { $0["extra"] = .null }, .unknownField, "extra"),
        MalformedCase("field of other kind", editedJSON(.skipped) { $0["createdAt"] = .integer(1) }, .unknownField, "createdAt"),
        MalformedCase("missing turn", editedJSON(.turnAppended) { $0["turn"] = nil }, .missingField, "turn"),
        MalformedCase(
            "bad role", editedJSON(.turnAppended) { editNested(&$0, "turn", "role", .string("robot")) }, .invalidValue, "turn.role"),
        MalformedCase(
            "metadata not strings", editedJSON(.turnAppended) { editNested(&$0, "turn", "metadata", .object(["a": .integer(1)])) },
            .invalidValue, "turn.metadata.a"
        ),
        MalformedCase(
            "turn stamp differs", editedJSON(.turnAppended) { editNested(&$0, "turn", "seq", .integer(9)) }, .invalidValue, "turn"),
        MalformedCase(
            "bad status", editedJSON(.ledgerEntryWritten) { editNested(&$0, "ledgerEntry", "status", .string("done")) }, .invalidValue,
            "ledgerEntry.status"
        ),
        MalformedCase("missing value", editedJSON(.valuePut) { editNested(&$0, "value", "value", nil) }, .missingField, "value.value"),
        MalformedCase("snapshot not object", editedJSON(.snapshot) { $0["snapshot"] = .array([]) }, .invalidValue, "snapshot"),
        MalformedCase(
            "bad snapshot turn",
            editedJSON(.snapshot) {
                editNested(&$0, "snapshot", "turns", .array([.object([:])]))
            }, .missingField, "snapshot.turns[0].role"
        ),
        MalformedCase(
            "repeated call id",
            editedJSON(.snapshot) {
                editNested(&$0, "snapshot", "ledger", .array([ledgerJSON, ledgerJSON]))
            }, .invalidValue, "snapshot.ledger[1].callId"
        ),
    ])
    func malformedEntryIsRejectedNamingField(_ malformed: MalformedCase) {
        do {
            let entry = try ReplicationEntry(json: malformed.json)
            Issue.record("\(malformed.scenario): decoded as \(entry.payload.kind) instead of failing")
        } catch {
            #expect(error.code == malformed.code, "\(malformed.scenario): \(error)")
            #expect(error.field == malformed.field, "\(malformed.scenario): \(error)")
            #expect(error.message.contains(malformed.field), "\(malformed.scenario): \(error)")
        }
    }

    static let ledgerJSON = ReplicationJSON.ledgerEntry(ledgerEntry)

    @Test func malformedBatchNamesEntryField() throws {
        guard case .object(var badEntry) = Self.everyKind[1].json else { fatalError("an entry encodes as an object") }
        badEntry["epoch"] = .number(1.5)
        let json = JSONValue.object([
            "batch": .integer(7), "entries": .array([Self.everyKind[0].json, .object(badEntry)]), "homeLastSeq": .object([:]),
        ])

        #expect(
            throws: ReplicationError(
                .invalidValue, field: "entries[1].epoch",
                "field \"entries[1].epoch\" must be a whole number from 0 to 9223372036854775807, got 1.5")
        ) {
            try ReplicationBatch(json: json)
        }
    }

    @Test func malformedAcknowledgementIsRejected() throws {
        do {
            _ = try ReplicationAcknowledgement(jsonBytes: Array(#"{"batch": 1, "positions": {"a b": 3}}"#.utf8))
            Issue.record("a position keyed by an invalid session id was accepted")
        } catch {
            #expect(error.code == .invalidValue)
            #expect(error.field == "positions.a b")
        }
        do {
            _ = try ReplicationAcknowledgement(jsonBytes: Array("{\"batch\": 1,".utf8))
            Issue.record("truncated JSON was accepted")
        } catch {
            #expect(error.code == .malformedJSON)
            #expect(error.field == nil)
        }
    }
}
