import Foundation
import Homeport

/// `homeport policy check [FILE]`: validates a table (the default one when no
/// file is given), prints it sorted by consistency with each kind's path, and
/// exits 1 when it has errors.
enum PolicyCommand {
    static let usage = """
        usage: homeport policy check [FILE]

        Validates the policy table in FILE (JSON), or the built-in default table
        when no FILE is given, and prints it sorted by consistency with the path
        each kind takes. Exits 0 when the table has no errors (warnings allowed),
        1 when it has errors, 2 on a usage error or an unreadable file.
        """

    static func run(_ arguments: [String]) -> Int32 {
        guard arguments.first == "check" else {
            printError(usage)
            return 2
        }
        let rest = Array(arguments.dropFirst())
        if rest.contains("--help") {
            print(usage)
            return 0
        }
        guard rest.count <= 1, rest.allSatisfy({ !$0.hasPrefix("--") }) else {
            printError(usage)
            return 2
        }

        let table: PolicyTable
        if let path = rest.first {
            do {
                table = try PolicyTable.load(path: path)
            } catch {
                printError("homeport policy check: \(error)")
                return 2
            }
        } else {
            table = PolicyTable.defaultTable
        }

        print(table.render(storeName: "memory store", linearizableStoreName: "embedded linearizable store"))
        print(buildScopeNote)
        let hasErrors = table.validate().contains { $0.severity == .error }
        if hasErrors { return 1 }

        // A valid table can still ask for more than this build runs.
        do {
            try table.checkServable()
            _ = try SessionStoreLimits(policy: table)
        } catch {
            printError(
                "error: the table passes the rules above, but this build cannot serve it: \(error.field): \(error.detail)")
            return 1
        }
        return 0
    }
}

/// The part of the table's paths that this build runs.
let buildScopeNote = """
    This build serves the session-local kinds from the home region's store (memory or Redis),
    forwards other regions' requests to it and replicates them lazily to the neighbour; set all
    four to linearizable to keep them in the linearizable store instead. Router weights and rate
    limits run only as eventually-global, quotas and billing only as linearizable.
    """

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
