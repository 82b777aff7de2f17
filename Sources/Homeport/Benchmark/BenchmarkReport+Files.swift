import Foundation

extension BenchmarkReport {
    /// Returns the report as JSON: the setup, every replay's summaries by
    /// operation and entry path, and the headline ratios per target.
    public func json() -> JSONValue {
        var setupFields: [String: JSONValue] = [:]
        for (name, value) in setup {
            setupFields[name] = .string(value)
        }

        let replays: [JSONValue] = runs.map { run in
            var operations: [JSONValue] = []
            for operation in run.operations {
                for entry in Self.entryPaths + ["all"] {
                    let summary = LatencySummary(run.latencies(of: operation, entry: entry == "all" ? nil : entry))
                    guard summary.count > 0 else { continue }
                    operations.append(
                        .object(["operation": .string(operation), "entry": .string(entry), "latency": summary.json]))
                }
            }
            return .object([
                "target": .string(run.target), "mode": .string(run.mode.rawValue), "roamingShare": .number(run.roamingShare),
                "requests": .integer(Int64(run.requests)), "roamingRequests": .integer(Int64(run.roamingRequests)),
                "errors": .integer(Int64(run.errors)), "lostAcknowledgedTurns": .integer(Int64(run.lostAcknowledgedTurns)),
                "wallSeconds": .number(run.wallSeconds), "operations": .array(operations),
            ])
        }

        var headlines: [JSONValue] = []
        for target in targets {
            var sweep: [JSONValue] = []
            for share in roamingShares {
                let ratio = p99Ratio(target, share: share, operation: Self.readOperation, entry: nil)
                sweep.append(.object(["roamingShare": .number(share), "readsP99Ratio": ratio.map(JSONValue.number) ?? .null]))
            }
            let homeRatio = p99Ratio(target, share: headlineShare, operation: Self.readOperation, entry: "home-entry")
            let allRatio = p99Ratio(target, share: headlineShare, operation: Self.readOperation, entry: nil)
            headlines.append(
                .object([
                    "target": .string(target), "roamingShare": .number(headlineShare),
                    "homeEntryReadsP99Ratio": homeRatio.map(JSONValue.number) ?? .null,
                    "allReadsP99Ratio": allRatio.map(JSONValue.number) ?? .null, "sweep": .array(sweep),
                ]))
        }
        return .object(["setup": .object(setupFields), "replays": .array(replays), "headlines": .array(headlines)])
    }

    /// Returns one CSV row per replay, operation and entry path (`all`
    /// included) with count and percentiles in milliseconds.
    public func summaryCSV() -> String {
        var lines = ["target,mode,roaming_share,operation,entry,count,p50_ms,p95_ms,p99_ms,p999_ms,max_ms"]
        for run in runs {
            for operation in run.operations {
                for entry in Self.entryPaths + ["all"] {
                    let summary = LatencySummary(run.latencies(of: operation, entry: entry == "all" ? nil : entry))
                    guard summary.count > 0 else { continue }
                    let numbers = [summary.p50, summary.p95, summary.p99, summary.p999, summary.maximum].map { String(format: "%.3f", $0) }
                    lines.append(
                        ([run.target, run.mode.rawValue, "\(run.roamingShare)", operation, entry, "\(summary.count)"] + numbers)
                            .joined(separator: ","))
                }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Returns every sample of the replays at `headlineShare`, one CSV row
    /// each, for the CDF plots.
    public func samplesCSV() -> String {
        var lines = ["target,mode,roaming_share,operation,entry,latency_ms"]
        for run in runs where run.roamingShare == headlineShare {
            for key in run.samples.keys.sorted() {
                for value in run.samples[key]! {
                    lines.append(
                        "\(run.target),\(run.mode.rawValue),\(run.roamingShare),\(key.operation),\(key.path),\(String(format: "%.3f", value))"
                    )
                }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Writes `results.json`, `summary.csv` and `samples.csv` into
    /// `directory`, creating it when missing.
    public func write(to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let folder = URL(fileURLWithPath: directory)
        try Data(json().serializedBytes()).write(to: folder.appendingPathComponent("results.json"))
        try Data(summaryCSV().utf8).write(to: folder.appendingPathComponent("summary.csv"))
        try Data(samplesCSV().utf8).write(to: folder.appendingPathComponent("samples.csv"))
    }
}
