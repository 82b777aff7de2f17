import Foundation
import Testing

@testable import Homeport

@Suite struct PolicyTableTests {
    // MARK: - Helpers

    private func parse(_ json: String) throws(PolicyError) -> PolicyTable {
        try PolicyTable.parse(Data(json.utf8))
    }

    /// Returns the error that parsing `json` throws, or records an issue when it parses.
    private func parseError(_ json: String, sourceLocation: SourceLocation = #_sourceLocation) -> PolicyError? {
        do {
            let table = try parse(json)
            Issue.record("expected a PolicyError, parsed \(table.rows.count) rows", sourceLocation: sourceLocation)
            return nil
        } catch {
            return error
        }
    }

    /// Wraps row objects, given as JSON text, in a version 1 policy file.
    private func file(_ rows: String...) -> String {
        #"{"version": 1, "kinds": ["# + rows.joined(separator: ", ") + "]}"
    }

    private let minimalRow =
        #"{"kind": "session_values", "readers": "single-session", "staleReadCost": "annoying", "consistency": "session-local"}"#

    /// Returns a session-local row with the given options object, as JSON text.
    private func rowWithOptions(_ options: String) -> String {
        #"{"kind": "session_values", "readers": "single-session", "staleReadCost": "annoying", "consistency": "session-local", "options": "#
            + options + "}"
    }

    private func row(
        _ kind: String,
        _ readers: PolicyReaders,
        _ cost: StaleReadCost,
        _ consistency: Consistency
    ) -> PolicyRow {
        PolicyRow(kind: kind, readers: readers, staleReadCost: cost, consistency: consistency)
    }

    // MARK: - Enums

    @Test func enumOrdering() {
        #expect(StaleReadCost.invisible < .annoying)
        #expect(StaleReadCost.annoying < .incorrect)
        #expect(StaleReadCost.allCases == [.invisible, .annoying, .incorrect])
        #expect(Consistency.sessionLocal < .eventuallyGlobal)
        #expect(Consistency.eventuallyGlobal < .linearizable)
        #expect(Consistency.allCases == [.sessionLocal, .eventuallyGlobal, .linearizable])
    }

    @Test func replicationDefaults() {
        #expect(ReplicationMode.defaultMode(for: .sessionLocal) == .neighbour)
        #expect(ReplicationMode.defaultMode(for: .eventuallyGlobal) == .allRegions)
        #expect(ReplicationMode.defaultMode(for: .linearizable) == .none)
    }

    @Test(arguments: [
        ("a", true),
        ("conversation_buffer", true),
        ("k9_", true),
        (String(repeating: "a", count: 64), true),
        (String(repeating: "a", count: 65), false),
        ("", false),
        ("9lives", false),
        ("_kind", false),
        ("Kind", false),
        ("kv-cache", false),
        ("kind ", false),
        ("kïnd", false),
    ])
    func kindNames(name: String, isValid: Bool) {
        #expect(PolicyRow.isValidKind(name) == isValid)
    }

    // MARK: - Default table

    @Test func defaultTableValidatesClean() {
        #expect(PolicyTable.defaultTable.validate() == [])
    }

    @Test func defaultTableContents() throws {
        let table = PolicyTable.defaultTable
        #expect(
            table.rows.map(\.kind) == [
                "conversation_buffer", "tool_call_ledger", "kv_cache_refs", "session_values",
                "model_router_weights", "rate_limit", "usage_quota", "billing_counter",
            ])
        #expect(table.rows.allSatisfy { !$0.notes.isEmpty })

        let buffer = try #require(table.row(for: "conversation_buffer"))
        #expect(buffer.readers == .singleSession)
        #expect(buffer.staleReadCost == .invisible)
        #expect(buffer.consistency == .sessionLocal)
        #expect(buffer.replication == .neighbour)
        #expect(buffer.limits == SizeLimits(maxEntries: 1024, maxEntryBytes: 1_048_576, maxTotalBytes: 16_777_216))

        let ledger = try #require(table.row(for: "tool_call_ledger"))
        #expect(ledger.staleReadCost == .annoying)
        #expect(ledger.limits == SizeLimits(maxEntries: 256, maxEntryBytes: 65_536))

        let kvCache = try #require(table.row(for: "kv_cache_refs"))
        #expect(kvCache.replication == .none)
        #expect(kvCache.ttlSeconds == 600)
        #expect(kvCache.limits == SizeLimits(maxEntries: 4096))

        let sessionValues = try #require(table.row(for: "session_values"))
        #expect(sessionValues.limits == SizeLimits(maxEntries: 64, maxEntryBytes: 16_384))

        let rateLimit = try #require(table.row(for: "rate_limit"))
        #expect(rateLimit.consistency == .eventuallyGlobal)
        #expect(rateLimit.replication == .allRegions)
        #expect(rateLimit.notes == "approximate, may over-admit briefly")

        let quota = try #require(table.row(for: "usage_quota"))
        #expect(quota.staleReadCost == .incorrect)
        #expect(quota.consistency == .linearizable)
        #expect(quota.notes == "never overspent")

        let billing = try #require(table.row(for: "billing_counter"))
        #expect(billing.consistency == .linearizable)
        #expect(billing.notes == "exactly once")
    }

    @Test func rowLookupMissingKind() {
        #expect(PolicyTable.defaultTable.row(for: "no_such_kind") == nil)
    }

    // MARK: - JSON round trip

    @Test func defaultTableRoundTrip() throws {
        let data = PolicyTable.defaultTable.jsonData()
        let parsed = try PolicyTable.parse(data)
        #expect(parsed == PolicyTable.defaultTable)
    }

    @Test func jsonOutputLayout() {
        let table = PolicyTable(rows: [
            PolicyRow(
                kind: "kv_cache_refs",
                readers: .singleSession,
                staleReadCost: .invisible,
                consistency: .sessionLocal,
                replication: .none,
                ttlSeconds: 600,
                limits: SizeLimits(maxEntries: 4096, overflow: .dropOldest),
                notes: "recomputable"
            ),
            row("usage_quota", .crossSession, .incorrect, .linearizable),
        ])
        let expected = """
            {
              "kinds": [
                {
                  "consistency": "session-local",
                  "kind": "kv_cache_refs",
                  "notes": "recomputable",
                  "options": {
                    "limits": {
                      "maxEntries": 4096,
                      "overflow": "drop-oldest"
                    },
                    "replication": "none",
                    "ttlSeconds": 600
                  },
                  "readers": "single-session",
                  "staleReadCost": "invisible"
                },
                {
                  "consistency": "linearizable",
                  "kind": "usage_quota",
                  "readers": "cross-session",
                  "staleReadCost": "incorrect"
                }
              ],
              "version": 1
            }

            """
        #expect(String(decoding: table.jsonData(), as: UTF8.self) == expected)
    }

    @Test func roundTripAllOptions() throws {
        let table = PolicyTable(rows: [
            PolicyRow(
                kind: "scratch",
                readers: .singleSession,
                staleReadCost: .invisible,
                consistency: .sessionLocal,
                replication: .none,
                ttlSeconds: 30,
                staleReadsAtNeighbour: true,
                limits: SizeLimits(maxEntries: 1, maxEntryBytes: 2, maxTotalBytes: 3, overflow: .dropOldest),
                notes: "quote \" backslash \\ newline \n tab \t bell \u{07} é 🚀"
            ),
            // A non-default replication is written out, so it survives the round trip.
            PolicyRow(
                kind: "odd",
                readers: .crossSession,
                staleReadCost: .annoying,
                consistency: .eventuallyGlobal,
                replication: .neighbour
            ),
        ])
        let parsed = try PolicyTable.parse(table.jsonData())
        #expect(parsed == table)

        // The indented text parses to the same document as the compact serialisation.
        let document = try JSONValue.parse(Array(table.jsonData()))
        #expect(document == PolicyFileEncoder.document(for: table))
    }

    // MARK: - Parsing valid files

    @Test func parseMinimalRowDefaults() throws {
        let table = try parse(file(minimalRow))
        #expect(table.rows.count == 1)
        let parsed = try #require(table.rows.first)
        #expect(parsed.kind == "session_values")
        #expect(parsed.readers == .singleSession)
        #expect(parsed.staleReadCost == .annoying)
        #expect(parsed.consistency == .sessionLocal)
        #expect(parsed.replication == .neighbour)
        #expect(parsed.ttlSeconds == nil)
        #expect(parsed.staleReadsAtNeighbour == false)
        #expect(parsed.limits == .unlimited)
        #expect(parsed.notes == "")
    }

    @Test func parseDefaultReplicationByConsistency() throws {
        let table = try parse(
            file(
                #"{"kind": "a", "readers": "cross-session", "staleReadCost": "annoying", "consistency": "eventually-global"}"#,
                #"{"kind": "b", "readers": "cross-session", "staleReadCost": "incorrect", "consistency": "linearizable"}"#
            ))
        #expect(table.rows.map(\.replication) == [.allRegions, .none])
    }

    @Test func parseAllOptions() throws {
        let json = rowWithOptions(
            #"{"replication": "none", "ttlSeconds": 90, "staleReadsAtNeighbour": true, "limits": {"maxEntries": 5, "maxEntryBytes": 6, "maxTotalBytes": 7, "overflow": "drop-oldest"}}"#
        )
        let parsed = try #require(try parse(file(json)).rows.first)
        #expect(parsed.replication == .none)
        #expect(parsed.ttlSeconds == 90)
        #expect(parsed.staleReadsAtNeighbour == true)
        #expect(parsed.limits == SizeLimits(maxEntries: 5, maxEntryBytes: 6, maxTotalBytes: 7, overflow: .dropOldest))
    }

    @Test func parseStringEscapes() throws {
        let json = file(
            #"{"kind": "a", "readers": "single-session", "staleReadCost": "annoying", "consistency": "session-local", "notes": "\"q\" \\ \/ \b\f\n\r\t \u00e9 \ud83d\ude80"}"#
        )
        let parsed = try #require(try parse(json).rows.first)
        #expect(parsed.notes == "\"q\" \\ / \u{08}\u{0C}\n\r\t é 🚀")
    }

    @Test func parseByteOrderMark() throws {
        let data = Data([0xEF, 0xBB, 0xBF]) + Data(file(minimalRow).utf8)
        #expect(try PolicyTable.parse(data).rows.count == 1)
    }

    // MARK: - Malformed JSON

    @Test(arguments: [
        ("", "invalid JSON: unexpected end of input at byte 0"),
        ("{", "invalid JSON: expected a string key at byte 1"),
        (#"{"version": 1,}"#, "invalid JSON: expected a string key at byte 14"),
        ("{\"version\": 1,\n \"kinds\": [1,]}", "invalid JSON: unexpected character at byte 28"),
        (#"{"version": 1, "version": 1}"#, #"invalid JSON: duplicate key "version" at byte 24"#),
        (#"{"version": 1} {}"#, "invalid JSON: unexpected data after the JSON value at byte 15"),
        (#"{"version": 01}"#, "invalid JSON: expected ',' or '}' in an object at byte 13"),
        (#"{"version": tru}"#, "invalid JSON: invalid literal at byte 12"),
        (#"{"version" 1}"#, "invalid JSON: expected ':' after an object key at byte 11"),
        (#"{"a": "x"#, "invalid JSON: unterminated string at byte 8"),
        (#"{"a": "\x"}"#, "invalid JSON: invalid escape at byte 9"),
        (#"{"a": "\ud800"}"#, #"invalid JSON: unpaired surrogate in \u escape at byte 13"#),
        (#"{"a": "\udc00"}"#, #"invalid JSON: unpaired surrogate in \u escape at byte 13"#),
        ("{\"a\": \"tab\there\"}", "invalid JSON: unescaped control character in a string at byte 10"),
        ("// comment\n{}", "invalid JSON: unexpected character at byte 0"),
    ])
    func malformedJSON(json: String, message: String) throws {
        let error = try #require(parseError(json))
        #expect(error.code == .malformedJSON)
        #expect(error.message == message)
        #expect(error.rowIndex == nil)
    }

    @Test func malformedInvalidUTF8() throws {
        do {
            _ = try PolicyTable.parse(Data([0x7B, 0xFF, 0x7D]))
            Issue.record("expected a PolicyError")
        } catch {
            #expect(error.code == .malformedJSON)
            #expect(error.message == "invalid JSON: the file is not valid UTF-8")
        }
    }

    @Test func malformedAfterByteOrderMark() throws {
        do {
            _ = try PolicyTable.parse(Data([0xEF, 0xBB, 0xBF]) + Data("{".utf8))
            Issue.record("expected a PolicyError")
        } catch {
            // The offset counts the 3 bytes of the byte order mark.
            #expect(error.code == .malformedJSON)
            #expect(error.message == "invalid JSON: expected a string key at byte 4")
        }
    }

    @Test func malformedDeepNesting() throws {
        let json = String(repeating: "[", count: 70) + String(repeating: "]", count: 70)
        let error = try #require(parseError(json))
        #expect(error.code == .malformedJSON)
        #expect(error.message == "invalid JSON: nesting deeper than 64 levels at byte 64")
    }

    // MARK: - Unknown fields

    @Test func unknownTopLevelField() throws {
        let error = try #require(parseError(#"{"version": 1, "kinds": [], "Version": 2}"#))
        #expect(error.code == .unknownField)
        #expect(error.message == #"unknown field "Version"; expected one of version, kinds"#)
        #expect(error.rowIndex == nil)
        #expect(error.field == "Version")
    }

    @Test func unknownRowField() throws {
        let json = file(
            minimalRow,
            #"{"kind": "rate_limit", "readers": "cross-session", "staleReadCost": "annoying", "consistency": "eventually-global", "note": "x"}"#
        )
        let error = try #require(parseError(json))
        #expect(error.code == .unknownField)
        #expect(
            error.message
                == #"row 1 (rate_limit): unknown field "note"; expected one of kind, readers, staleReadCost, consistency, notes, options"#
        )
        #expect(error.rowIndex == 1)
        #expect(error.field == "note")
    }

    @Test func unknownOptionField() throws {
        let error = try #require(parseError(file(rowWithOptions(#"{"replicaton": "none"}"#))))
        #expect(error.code == .unknownField)
        #expect(
            error.message
                == #"row 0 (session_values): unknown field "options.replicaton"; expected one of replication, ttlSeconds, staleReadsAtNeighbour, limits"#
        )
        #expect(error.field == "options.replicaton")
    }

    @Test func unknownLimitsField() throws {
        let error = try #require(parseError(file(rowWithOptions(#"{"limits": {"maxEntries": 4, "maxBytes": 5}}"#))))
        #expect(error.code == .unknownField)
        #expect(
            error.message
                == #"row 0 (session_values): unknown field "options.limits.maxBytes"; expected one of maxEntries, maxEntryBytes, maxTotalBytes, overflow"#
        )
        #expect(error.field == "options.limits.maxBytes")
    }

    @Test func severalUnknownFieldsReportsFirstByName() throws {
        let error = try #require(parseError(#"{"zeta": 1, "version": 1, "kinds": [], "alpha": 2}"#))
        #expect(error.code == .unknownField)
        #expect(error.message == #"unknown field "alpha"; expected one of version, kinds"#)
        #expect(error.field == "alpha")
    }

    @Test func unknownFieldWithoutValidKind() throws {
        let error = try #require(parseError(file(#"{"knd": "x", "readers": "single-session"}"#)))
        #expect(error.code == .unknownField)
        #expect(
            error.message
                == #"row 0: unknown field "knd"; expected one of kind, readers, staleReadCost, consistency, notes, options"#
        )
    }

    // MARK: - Missing fields

    @Test(arguments: [
        (#"{"kinds": []}"#, #"missing field "version"; expected 1"#, "version"),
        (#"{"version": 1}"#, #"missing field "kinds"; expected an array of rows"#, "kinds"),
    ])
    func missingTopLevelField(json: String, message: String, field: String) throws {
        let error = try #require(parseError(json))
        #expect(error.code == .missingField)
        #expect(error.message == message)
        #expect(error.field == field)
    }

    @Test func missingKind() throws {
        let error = try #require(parseError(file(#"{"readers": "single-session"}"#)))
        #expect(error.code == .missingField)
        #expect(error.message == #"row 0: missing field "kind"; expected a name such as "conversation_buffer""#)
        #expect(error.rowIndex == 0)
    }

    @Test func missingConsistency() throws {
        let json = file(
            minimalRow,
            minimalRow.replacingOccurrences(of: "session_values", with: "tool_call_ledger")
                .replacingOccurrences(of: #", "consistency": "session-local""#, with: "")
        )
        let error = try #require(parseError(json))
        #expect(error.code == .missingField)
        #expect(
            error.message
                == #"row 1 (tool_call_ledger): missing field "consistency"; expected one of session-local, eventually-global, linearizable"#
        )
        #expect(error.rowIndex == 1)
        #expect(error.field == "consistency")
    }

    @Test func missingReaders() throws {
        let error = try #require(
            parseError(file(#"{"kind": "a", "staleReadCost": "annoying", "consistency": "session-local"}"#)))
        #expect(error.code == .missingField)
        #expect(error.message == #"row 0 (a): missing field "readers"; expected one of single-session, cross-session"#)
    }

    // MARK: - Wrong types

    @Test(arguments: [
        ("[]", "the top level has type array; expected an object with fields version and kinds", nil as String?),
        (#"{"version": "1", "kinds": []}"#, #"field "version" has type string; expected 1"#, "version"),
        (#"{"version": 1, "kinds": {}}"#, #"field "kinds" has type object; expected an array of rows"#, "kinds"),
        (
            #"{"version": 1, "kinds": ["usage_quota"]}"#,
            "row 0 has type string; expected an object with fields kind, readers, staleReadCost and consistency", nil
        ),
    ])
    func wrongTypeOutsideRow(json: String, message: String, field: String?) throws {
        let error = try #require(parseError(json))
        #expect(error.code == .wrongType)
        #expect(error.message == message)
        #expect(error.field == field)
    }

    @Test(arguments: [
        (
            #"{"kind": 7, "readers": "single-session", "staleReadCost": "annoying", "consistency": "session-local"}"#,
            #"row 0: field "kind" has type number; expected a string"#
        ),
        (
            #"{"kind": "a", "readers": 1, "staleReadCost": "annoying", "consistency": "session-local"}"#,
            #"row 0 (a): field "readers" has type number; expected one of single-session, cross-session"#
        ),
        (
            #"{"kind": "a", "readers": "single-session", "staleReadCost": "annoying", "consistency": "session-local", "notes": null}"#,
            #"row 0 (a): field "notes" has type null; expected a string"#
        ),
        (
            #"{"kind": "a", "readers": "single-session", "staleReadCost": "annoying", "consistency": "session-local", "options": []}"#,
            #"row 0 (a): field "options" has type array; expected an object with fields replication, ttlSeconds, staleReadsAtNeighbour, limits"#
        ),
    ])
    func wrongTypeInRow(row: String, message: String) throws {
        let error = try #require(parseError(file(row)))
        #expect(error.code == .wrongType)
        #expect(error.message == message)
        #expect(error.rowIndex == 0)
    }

    @Test(arguments: [
        (
            #"{"ttlSeconds": "600"}"#,
            #"row 0 (session_values): field "options.ttlSeconds" has type string; expected a positive integer"#
        ),
        (
            #"{"ttlSeconds": true}"#,
            #"row 0 (session_values): field "options.ttlSeconds" has type boolean; expected a positive integer"#
        ),
        (
            #"{"staleReadsAtNeighbour": "true"}"#,
            #"row 0 (session_values): field "options.staleReadsAtNeighbour" has type string; expected true or false"#
        ),
        (
            #"{"staleReadsAtNeighbour": 1}"#,
            #"row 0 (session_values): field "options.staleReadsAtNeighbour" has type number; expected true or false"#
        ),
        (
            #"{"limits": 10}"#,
            #"row 0 (session_values): field "options.limits" has type number; expected an object with fields maxEntries, maxEntryBytes, maxTotalBytes, overflow"#
        ),
        (
            #"{"limits": {"overflow": false}}"#,
            #"row 0 (session_values): field "options.limits.overflow" has type boolean; expected one of reject, drop-oldest"#
        ),
    ])
    func wrongTypeInOptions(options: String, message: String) throws {
        let error = try #require(parseError(file(rowWithOptions(options))))
        #expect(error.code == .wrongType)
        #expect(error.message == message)
    }

    // MARK: - Invalid values

    @Test func unknownConsistencyValue() throws {
        let json = file(
            #"{"kind": "usage_quota", "readers": "cross-session", "staleReadCost": "incorrect", "consistency": "strong"}"#
        )
        let error = try #require(parseError(json))
        #expect(error.code == .invalidValue)
        #expect(
            error.message
                == #"row 0 (usage_quota): field "consistency" has unknown value "strong"; expected one of session-local, eventually-global, linearizable"#
        )
        #expect(error.rowIndex == 0)
        #expect(error.field == "consistency")
    }

    @Test(arguments: [
        (
            #"{"kind": "a", "readers": "everyone", "staleReadCost": "annoying", "consistency": "session-local"}"#,
            #"row 0 (a): field "readers" has unknown value "everyone"; expected one of single-session, cross-session"#
        ),
        (
            #"{"kind": "a", "readers": "single-session", "staleReadCost": "Annoying", "consistency": "session-local"}"#,
            #"row 0 (a): field "staleReadCost" has unknown value "Annoying"; expected one of invisible, annoying, incorrect"#
        ),
        (
            #"{"kind": "Bad-Name", "readers": "single-session", "staleReadCost": "annoying", "consistency": "session-local"}"#,
            #"row 0: field "kind" has invalid value "Bad-Name"; expected a lowercase letter followed by at most 63 lowercase letters, digits or underscores"#
        ),
    ])
    func invalidRowValue(row: String, message: String) throws {
        let error = try #require(parseError(file(row)))
        #expect(error.code == .invalidValue)
        #expect(error.message == message)
    }

    @Test(arguments: [
        (
            #"{"replication": "everywhere"}"#,
            #"row 0 (session_values): field "options.replication" has unknown value "everywhere"; expected one of neighbour, none, all-regions"#
        ),
        (
            #"{"ttlSeconds": 0}"#,
            #"row 0 (session_values): field "options.ttlSeconds" has invalid value 0; expected a positive integer"#
        ),
        (
            #"{"ttlSeconds": 1.5}"#,
            #"row 0 (session_values): field "options.ttlSeconds" has invalid value 1.5; expected a positive integer"#
        ),
        (
            #"{"ttlSeconds": 1e3}"#,
            #"row 0 (session_values): field "options.ttlSeconds" has invalid value 1000.0; expected a positive integer"#
        ),
        (
            #"{"ttlSeconds": 99999999999999999999}"#,
            #"row 0 (session_values): field "options.ttlSeconds" has out-of-range value 1e+20; expected a positive integer"#
        ),
        (
            #"{"limits": {"maxEntries": -1}}"#,
            #"row 0 (session_values): field "options.limits.maxEntries" has invalid value -1; expected a positive integer"#
        ),
        (
            #"{"limits": {"maxTotalBytes": 0}}"#,
            #"row 0 (session_values): field "options.limits.maxTotalBytes" has invalid value 0; expected a positive integer"#
        ),
        (
            #"{"limits": {"overflow": "drop-newest"}}"#,
            #"row 0 (session_values): field "options.limits.overflow" has unknown value "drop-newest"; expected one of reject, drop-oldest"#
        ),
    ])
    func invalidOptionValue(options: String, message: String) throws {
        let error = try #require(parseError(file(rowWithOptions(options))))
        #expect(error.code == .invalidValue)
        #expect(error.message == message)
    }

    @Test func unsupportedVersion() throws {
        let error = try #require(parseError(#"{"version": 2, "kinds": []}"#))
        #expect(error.code == .invalidValue)
        #expect(error.message == #"field "version" has unsupported value 2; expected 1"#)
        #expect(error.field == "version")
    }

    // MARK: - Duplicate kinds and empty tables

    @Test func duplicateKindInFile() throws {
        let other =
            #"{"kind": "rate_limit", "readers": "cross-session", "staleReadCost": "annoying", "consistency": "eventually-global"}"#
        let error = try #require(parseError(file(minimalRow, other, minimalRow)))
        #expect(error.code == .duplicateKind)
        #expect(
            error.message
                == #"row 2 (session_values): duplicate kind "session_values", first defined in row 0; rename or remove one of the rows"#
        )
        #expect(error.rowIndex == 2)
    }

    @Test func emptyTable() throws {
        let error = try #require(parseError(#"{"version": 1, "kinds": []}"#))
        #expect(error.code == .emptyTable)
        #expect(error.message == #"field "kinds" is empty; add at least one row"#)
    }

    // MARK: - Validation rules

    @Test func incorrectRequiresLinearizable() {
        let table = PolicyTable(rows: [
            row("conversation_buffer", .singleSession, .invisible, .sessionLocal),
            row("usage_quota", .crossSession, .incorrect, .eventuallyGlobal),
        ])
        let expected = PolicyDiagnostic(
            severity: .error,
            rowIndex: 1,
            kind: "usage_quota",
            rule: .incorrectRequiresLinearizable,
            message:
                "row 1 (usage_quota): staleReadCost incorrect requires consistency linearizable, but the row has eventually-global; set consistency to linearizable (rule incorrectRequiresLinearizable)"
        )
        #expect(table.validate() == [expected])
    }

    @Test func crossSessionForbidsSessionLocal() {
        let table = PolicyTable(rows: [row("rate_limit", .crossSession, .annoying, .sessionLocal)])
        let expected = PolicyDiagnostic(
            severity: .error,
            rowIndex: 0,
            kind: "rate_limit",
            rule: .crossSessionForbidsSessionLocal,
            message:
                "row 0 (rate_limit): readers cross-session forbids consistency session-local, because other sessions cannot read a session's home-region state; use eventually-global or linearizable (rule crossSessionForbidsSessionLocal)"
        )
        #expect(table.validate() == [expected])
    }

    @Test func incorrectSessionLocalBreaksBothRules() {
        let table = PolicyTable(rows: [row("billing_counter", .crossSession, .incorrect, .sessionLocal)])
        #expect(table.validate().map(\.rule) == [.incorrectRequiresLinearizable, .crossSessionForbidsSessionLocal])
        #expect(table.validate().allSatisfy { $0.severity == .error })
    }

    @Test func linearizableAnnoyingWarns() {
        let table = PolicyTable(rows: [row("rate_limit", .crossSession, .annoying, .linearizable)])
        let expected = PolicyDiagnostic(
            severity: .warning,
            rowIndex: 0,
            kind: "rate_limit",
            rule: .linearizableBelowIncorrect,
            message:
                "row 0 (rate_limit): consistency linearizable pays a consensus round trip on every write, but a stale read is only annoying; consider eventually-global (rule linearizableBelowIncorrect)"
        )
        #expect(table.validate() == [expected])
    }

    @Test func linearizableInvisibleWarns() {
        let table = PolicyTable(rows: [row("conversation_buffer", .singleSession, .invisible, .linearizable)])
        let diagnostics = table.validate()
        #expect(diagnostics.count == 1)
        #expect(diagnostics.first?.severity == .warning)
        #expect(diagnostics.first?.rule == .linearizableBelowIncorrect)
        #expect(
            diagnostics.first?.message
                == "row 0 (conversation_buffer): consistency linearizable pays a consensus round trip on every write, but a stale read is only invisible; consider session-local (rule linearizableBelowIncorrect)"
        )
    }

    @Test(arguments: [
        (
            Consistency.sessionLocal, ReplicationMode.allRegions,
            "replication all-regions is invalid with consistency session-local, which allows neighbour or none; remove options.replication to get the default neighbour"
        ),
        (
            .eventuallyGlobal, .neighbour,
            "replication neighbour is invalid with consistency eventually-global, which allows all-regions; remove options.replication to get the default all-regions"
        ),
        (
            .eventuallyGlobal, .none,
            "replication none is invalid with consistency eventually-global, which allows all-regions; remove options.replication to get the default all-regions"
        ),
        (
            .linearizable, .neighbour,
            "replication neighbour is invalid with consistency linearizable, which allows none; remove options.replication to get the default none"
        ),
        (
            .linearizable, .allRegions,
            "replication all-regions is invalid with consistency linearizable, which allows none; remove options.replication to get the default none"
        ),
    ])
    func replicationModeMismatch(consistency: Consistency, replication: ReplicationMode, problem: String) {
        let table = PolicyTable(rows: [
            PolicyRow(
                kind: "counter",
                readers: .crossSession,
                staleReadCost: .incorrect,
                consistency: consistency,
                replication: replication
            )
        ])
        let mismatches = table.validate().filter { $0.rule == .replicationModeMismatch }
        #expect(mismatches.count == 1)
        #expect(mismatches.first?.severity == .error)
        #expect(mismatches.first?.message == "row 0 (counter): \(problem) (rule replicationModeMismatch)")
    }

    @Test func replicationNoneSessionLocalValid() {
        let table = PolicyTable(rows: [
            PolicyRow(
                kind: "kv_cache_refs",
                readers: .singleSession,
                staleReadCost: .invisible,
                consistency: .sessionLocal,
                replication: .none
            )
        ])
        #expect(table.validate() == [])
    }

    @Test func replicationMismatchFromFile() throws {
        let json = file(
            #"{"kind": "rate_limit", "readers": "cross-session", "staleReadCost": "annoying", "consistency": "eventually-global", "options": {"replication": "neighbour"}}"#
        )
        let table = try parse(json)
        #expect(table.validate().map(\.rule) == [.replicationModeMismatch])
    }

    @Test func staleReadsAtNeighbourAnnoying() {
        var tableRow = row("tool_call_ledger", .singleSession, .annoying, .sessionLocal)
        tableRow.staleReadsAtNeighbour = true
        let expected = PolicyDiagnostic(
            severity: .error,
            rowIndex: 0,
            kind: "tool_call_ledger",
            rule: .staleReadsAtNeighbourRequiresInvisible,
            message:
                "row 0 (tool_call_ledger): staleReadsAtNeighbour requires staleReadCost invisible and consistency session-local, but staleReadCost is annoying; set it to false (rule staleReadsAtNeighbourRequiresInvisible)"
        )
        #expect(PolicyTable(rows: [tableRow]).validate() == [expected])
    }

    @Test func staleReadsAtNeighbourNotSessionLocal() {
        var tableRow = row("model_router_weights", .crossSession, .invisible, .eventuallyGlobal)
        tableRow.staleReadsAtNeighbour = true
        let diagnostics = PolicyTable(rows: [tableRow]).validate()
        #expect(diagnostics.map(\.rule) == [.staleReadsAtNeighbourRequiresInvisible])
        #expect(
            diagnostics.first?.message
                == "row 0 (model_router_weights): staleReadsAtNeighbour requires staleReadCost invisible and consistency session-local, but consistency is eventually-global; set it to false (rule staleReadsAtNeighbourRequiresInvisible)"
        )
    }

    @Test func staleReadsAtNeighbourFromFile() throws {
        let table = try parse(file(rowWithOptions(#"{"staleReadsAtNeighbour": true}"#)))
        let diagnostics = table.validate()
        #expect(diagnostics.map(\.rule) == [.staleReadsAtNeighbourRequiresInvisible])
        #expect(diagnostics.first?.severity == .error)
    }

    @Test func staleReadsAtNeighbourInvisibleValid() {
        var tableRow = row("conversation_buffer", .singleSession, .invisible, .sessionLocal)
        tableRow.staleReadsAtNeighbour = true
        #expect(PolicyTable(rows: [tableRow]).validate() == [])
    }

    @Test func invalidKindInCode() {
        let table = PolicyTable(rows: [row("Bad\nKind", .singleSession, .invisible, .sessionLocal)])
        let diagnostics = table.validate()
        #expect(diagnostics.map(\.rule) == [.invalidKind])
        #expect(
            diagnostics.first?.message
                == #"row 0 (Bad\nKind): kind "Bad\nKind" is invalid; use a lowercase letter followed by at most 63 lowercase letters, digits or underscores (rule invalidKind)"#
        )
    }

    @Test func duplicateKindInCode() {
        let table = PolicyTable(rows: [
            row("rate_limit", .crossSession, .annoying, .eventuallyGlobal),
            row("rate_limit", .crossSession, .annoying, .eventuallyGlobal),
        ])
        let diagnostics = table.validate()
        #expect(diagnostics.map(\.rule) == [.duplicateKind])
        #expect(diagnostics.first?.rowIndex == 1)
        #expect(
            diagnostics.first?.message
                == #"row 1 (rate_limit): kind "rate_limit" is already defined in row 0; rename or remove one of the rows (rule duplicateKind)"#
        )
    }

    @Test func nonPositiveOptionsInCode() {
        let table = PolicyTable(rows: [
            PolicyRow(
                kind: "session_values",
                readers: .singleSession,
                staleReadCost: .annoying,
                consistency: .sessionLocal,
                ttlSeconds: 0,
                limits: SizeLimits(maxEntries: 10, maxEntryBytes: -5)
            )
        ])
        let messages = table.validate().map(\.message)
        #expect(
            messages == [
                "row 0 (session_values): ttlSeconds is 0; use a positive value or remove the option (rule nonPositiveOption)",
                "row 0 (session_values): limits.maxEntryBytes is -5; use a positive value or remove the option (rule nonPositiveOption)",
            ])
    }

    @Test func diagnosticDescription() {
        let table = PolicyTable(rows: [
            row("usage_quota", .crossSession, .incorrect, .eventuallyGlobal),
            row("rate_limit", .crossSession, .annoying, .linearizable),
        ])
        let descriptions = table.validate().map(\.description)
        #expect(descriptions.count == 2)
        #expect(descriptions.first?.hasPrefix("error: row 0 (usage_quota): ") == true)
        #expect(descriptions.last?.hasPrefix("warning: row 1 (rate_limit): ") == true)
    }

    // MARK: - Rendering

    @Test func renderDefaultTable() {
        let output = PolicyTable.defaultTable.render(storeName: "memory store", linearizableStoreName: "Raft store")
        let expected = """
            kind                  readers         stale read  consistency        path
            conversation_buffer   single-session  invisible   session-local      home region's memory store, replicated lazily to the neighbour
            kv_cache_refs         single-session  invisible   session-local      home region's memory store, not replicated
            session_values        single-session  annoying    session-local      home region's memory store, replicated lazily to the neighbour
            tool_call_ledger      single-session  annoying    session-local      home region's memory store, replicated lazily to the neighbour
            model_router_weights  cross-session   annoying    eventually-global  every region's memory store, pushed to all regions, HLC last-writer-wins, anti-entropy
            rate_limit            cross-session   annoying    eventually-global  every region's memory store, pushed to all regions, HLC last-writer-wins, anti-entropy
            billing_counter       cross-session   incorrect   linearizable       Raft store (consensus on every write)
            usage_quota           cross-session   incorrect   linearizable       Raft store (consensus on every write)

            no errors, no warnings

            """
        #expect(output == expected)
    }

    @Test func renderSortsByConsistency() {
        let table = PolicyTable(rows: [
            row("b_quota", .crossSession, .incorrect, .linearizable),
            row("z_local", .singleSession, .invisible, .sessionLocal),
            row("weights", .crossSession, .annoying, .eventuallyGlobal),
            row("a_local", .singleSession, .annoying, .sessionLocal),
            row("a_quota", .crossSession, .incorrect, .linearizable),
        ])
        let lines = table.render(storeName: "Redis", linearizableStoreName: "etcd").split(separator: "\n")
        let kinds = lines.dropFirst().prefix(5).map { $0.split(separator: " ").first.map(String.init) }
        #expect(kinds == ["a_local", "z_local", "weights", "a_quota", "b_quota"])
    }

    @Test func renderDiagnostics() {
        let table = PolicyTable(rows: [
            row("rate_limit", .crossSession, .annoying, .linearizable),
            row("usage_quota", .crossSession, .incorrect, .eventuallyGlobal),
        ])
        let output = table.render(storeName: "Redis", linearizableStoreName: "etcd")
        let expected = """
            kind         readers        stale read  consistency        path
            usage_quota  cross-session  incorrect   eventually-global  every region's Redis, pushed to all regions, HLC last-writer-wins, anti-entropy
            rate_limit   cross-session  annoying    linearizable       etcd (consensus on every write)

            error: row 1 (usage_quota): staleReadCost incorrect requires consistency linearizable, but the row has eventually-global; set consistency to linearizable (rule incorrectRequiresLinearizable)
            warning: row 0 (rate_limit): consistency linearizable pays a consensus round trip on every write, but a stale read is only annoying; consider eventually-global (rule linearizableBelowIncorrect)
            1 error, 1 warning

            """
        #expect(output == expected)
    }

    @Test func renderSummaryPlurals() {
        let table = PolicyTable(rows: [
            row("a", .crossSession, .incorrect, .sessionLocal),
            row("b", .crossSession, .annoying, .linearizable),
            row("c", .singleSession, .invisible, .linearizable),
        ])
        let lastLine = table.render(storeName: "Redis", linearizableStoreName: "etcd")
            .split(separator: "\n").last.map(String.init)
        #expect(lastLine == "2 errors, 2 warnings")
    }

    // MARK: - Loading files

    @Test func loadMissingFile() throws {
        let path = "/nonexistent-homeport-dir/policy.json"
        do {
            _ = try PolicyTable.load(path: path)
            Issue.record("expected a PolicyError")
        } catch {
            #expect(error.code == .unreadableFile)
            #expect(error.message == "/nonexistent-homeport-dir/policy.json: policy file not found; check the path")
        }
    }

    @Test func loadDirectory() throws {
        let path = FileManager.default.temporaryDirectory.path
        do {
            _ = try PolicyTable.load(path: path)
            Issue.record("expected a PolicyError")
        } catch {
            #expect(error.code == .unreadableFile)
            #expect(error.message == "\(path): is a directory; expected a policy file in JSON")
        }
    }

    @Test func loadValidFile() throws {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("homeport-policy-\(UUID().uuidString).json")
        try PolicyTable.defaultTable.jsonData().write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }

        #expect(try PolicyTable.load(path: url.path) == PolicyTable.defaultTable)
    }

    @Test func loadParseErrorNamesPath() throws {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("homeport-policy-\(UUID().uuidString).json")
        try Data(#"{"version": 1, "kinds": []}"#.utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }

        do {
            _ = try PolicyTable.load(path: url.path)
            Issue.record("expected a PolicyError")
        } catch {
            #expect(error.code == .emptyTable)
            #expect(error.message == "\(url.path): field \"kinds\" is empty; add at least one row")
        }
    }
}
