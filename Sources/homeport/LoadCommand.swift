import Foundation
import Homeport

/// `homeport load`: drives one node's session API and reports throughput.
enum LoadCommand {
    static let usage = """
        usage: homeport load --target HOST:PORT [options]

        Opens N persistent HTTP connections to one Homeport node, each on its own
        thread, and for the given duration appends turns, reads the tail of a
        session, or alternates the two. Prints operations per second and latency
        percentiles after the warm-up. Each connection opens a new session every
        --turns-per-session appends; those creates are not counted as operations.
        Exits 1 if any request failed.

        options:
          --target HOST:PORT      the node's address (required; IPv4)
          --connections N         concurrent connections (default 16, 1 to 1024)
          --duration-s S          how long to run, in seconds (default 10)
          --warmup-s S            seconds at the start whose samples are dropped (default 1)
          --operation OP          append (default), read or mixed
          --content-bytes B       bytes of each appended turn (default 256)
          --turns-per-session N   appends before a connection opens a new session (default 500)
          --json                  print the report as one JSON object
        """

    static func run(_ arguments: [String]) async -> Int32 {
        do {
            let options = try CommandLineOptions(
                arguments,
                valued: ["target", "connections", "duration-s", "warmup-s", "operation", "content-bytes", "turns-per-session"],
                switches: ["help", "json"])
            if options.has("help") {
                print(usage)
                return 0
            }
            try options.rejectPositional()
            return try await load(options)
        } catch let error as CommandLineOptions.UsageError {
            printError("homeport load: \(error)\nRun `homeport load --help` for the options.")
            return 2
        } catch {
            printError("homeport load: \(error)")
            return 2
        }
    }

    private static func load(_ options: CommandLineOptions) async throws -> Int32 {
        guard let target = options.string("target") else {
            throw CommandLineOptions.UsageError(description: "--target HOST:PORT is required, such as 127.0.0.1:7101")
        }
        let parts = target.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, let port = UInt16(parts[1]), port > 0 else {
            throw CommandLineOptions.UsageError(description: "--target \(target) is not HOST:PORT, such as 127.0.0.1:7101")
        }

        var configuration = LoadGenerator.Configuration(port: port)
        configuration.host = String(parts[0])
        configuration.connections = try options.integer("connections", in: 1...1024) ?? configuration.connections
        if let seconds = try options.number("duration-s", in: 0.1...3600) { configuration.duration = .milliseconds(Int(seconds * 1000)) }
        if let seconds = try options.number("warmup-s", in: 0...3600) { configuration.warmup = .milliseconds(Int(seconds * 1000)) }
        if let name = options.string("operation") {
            guard let operation = LoadGenerator.Operation(rawValue: name) else {
                throw CommandLineOptions.UsageError(description: "--operation must be append, read or mixed, got \"\(name)\"")
            }
            configuration.operation = operation
        }
        configuration.contentBytes = try options.integer("content-bytes", in: 1...(1 << 20)) ?? configuration.contentBytes
        configuration.turnsPerSession = try options.integer("turns-per-session", in: 1...1000) ?? configuration.turnsPerSession
        try configuration.validate()

        let report = await LoadGenerator.run(configuration)
        if options.has("json") {
            let json = JSONValue.object([
                "target": .string(target), "operation": .string(configuration.operation.rawValue),
                "connections": .integer(Int64(configuration.connections)), "operations": .integer(Int64(report.operations)),
                "operationsPerSecond": .number(report.operationsPerSecond), "latency": report.latency.json,
                "sessionsCreated": .integer(Int64(report.sessionsCreated)), "errors": .integer(Int64(report.errors)),
            ])
            print(json.serializedString())
        } else {
            let latency = report.latency
            print(
                "\(configuration.operation.rawValue) × \(configuration.connections) connections to \(target): \(report.operations) operations in \(String(format: "%.1f", report.measuredSeconds)) s = \(String(format: "%.0f", report.operationsPerSecond)) ops/s; latency ms p50 \(format(latency.p50)), p95 \(format(latency.p95)), p99 \(format(latency.p99)), p99.9 \(format(latency.p999)); \(report.sessionsCreated) sessions created, \(report.errors) errors"
            )
        }
        for error in report.firstErrors {
            printError("homeport load: \(error)")
        }
        return report.errors == 0 ? 0 : 1
    }

    private static func format(_ value: Double) -> String {
        String(format: value < 10 ? "%.2f" : "%.1f", value)
    }
}
