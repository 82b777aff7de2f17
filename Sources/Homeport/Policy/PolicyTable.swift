import Foundation

/// The policy table: one row per state kind, declaring who reads it, how bad a
/// stale read is and which consistency mechanism it gets.
///
/// The policy file has the form `{ "version": 1, "kinds": [ row, ... ] }`, where a row is
///
///     {
///       "kind": "conversation_buffer",
///       "readers": "single-session",
///       "staleReadCost": "invisible",
///       "consistency": "session-local",
///       "options": {
///         "replication": "neighbour", "ttlSeconds": 600, "staleReadsAtNeighbour": false,
///         "limits": { "maxEntries": 1024, "maxEntryBytes": 1048576, "maxTotalBytes": 16777216, "overflow": "reject" }
///       },
///       "notes": "free text"
///     }
///
/// `kind`, `readers`, `staleReadCost` and `consistency` are required; `options`,
/// each option and `notes` may be left out. `parse` checks the shape of the file
/// and `validate()` checks the rules that relate the fields of a row.
public struct PolicyTable: Sendable, Equatable {
    /// Rows in file order. `parse` guarantees at least one row and distinct kinds.
    public var rows: [PolicyRow]

    public init(rows: [PolicyRow]) {
        self.rows = rows
    }

    /// Parses a policy file.
    ///
    /// - Throws: `PolicyError` for malformed JSON, an unknown or missing field, a
    ///   wrong type, an unknown enum value, a non-positive option, an invalid or
    ///   duplicate kind, an empty table or an unsupported version. The message names
    ///   the row, counted from 0, and the field. The rules of `validate()` are not
    ///   checked here.
    public static func parse(_ data: Data) throws(PolicyError) -> PolicyTable {
        let document = try PolicyFileDecoder.parseJSON(data)
        return try PolicyFileDecoder.decode(document)
    }

    /// Reads and parses the policy file at `path`.
    ///
    /// - Throws: `PolicyError` with code `unreadableFile` when the file is missing,
    ///   is a directory or cannot be read, and otherwise the errors of `parse`.
    ///   Every message starts with `path`.
    public static func load(path: String) throws(PolicyError) -> PolicyTable {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw PolicyError(
                code: .unreadableFile,
                message: "\(path): policy file not found; check the path"
            )
        }
        guard !isDirectory.boolValue else {
            throw PolicyError(
                code: .unreadableFile,
                message: "\(path): is a directory; expected a policy file in JSON"
            )
        }

        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw PolicyError(
                code: .unreadableFile,
                message: "\(path): failed to read the policy file: \(readFailureReason(error))"
            )
        }

        do {
            return try parse(data)
        } catch {
            var located = error
            located.message = "\(path): \(error.message)"
            throw located
        }
    }

    /// Returns the first row whose kind is `kind`, or `nil` when there is none.
    public func row(for kind: String) -> PolicyRow? {
        rows.first { $0.kind == kind }
    }

    private static func readFailureReason(_ error: any Error) -> String {
        let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError
        return (underlying ?? error as NSError).localizedDescription
    }
}
