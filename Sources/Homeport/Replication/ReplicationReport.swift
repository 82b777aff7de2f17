import Foundation

/// Replication lag per home region after a run, against the bound the design
/// promises: the batch delay plus the one-way delay to the neighbour (at full
/// jitter) plus 10 ms.
///
/// With an outage, entries written toward the failed region while it was
/// down (and shortly around it) wait for it by design. So they are left out
/// of the lag that is held to the bound and summarised on their own.
public struct ReplicationReport: Sendable {
    public struct Row: Sendable {
        public var region: String
        public var neighbour: String
        /// Lag of the entries written outside the outage.
        public var lag: LatencySummary
        /// Lag of the entries written toward the failed region during its outage.
        public var outageLag: LatencySummary
        public var batchesSent = 0
        public var batchesFailed = 0
        public var snapshotFallbacks = 0
        /// Entries the current node's neighbour has not acknowledged.
        public var pendingEntries = 0
        public var boundMilliseconds: Double
    }

    /// An outage to leave out: the region and the window of enqueue times, in
    /// milliseconds since the Unix epoch.
    public struct Outage: Sendable {
        public var region: String
        public var window: ClosedRange<Int64>

        public init(region: String, window: ClosedRange<Int64>) {
            self.region = region
            self.window = window
        }
    }

    public static let allowanceMilliseconds = 10.0
    public var rows: [Row]
    public var outage: Outage?

    public init(cluster: EmbeddedCluster, configuration: ReplicationOutbox.Configuration, outage: Outage? = nil) {
        self.outage = outage
        rows = cluster.topology.regionNames.compactMap { region in
            guard let neighbour = cluster.topology.neighbour(of: region) else { return nil }
            let runs = cluster.replicationStatistics(of: region)
            guard !runs.isEmpty else { return nil }

            var lags: [Double] = []
            var outageLags: [Double] = []
            for run in runs {
                for (lag, enqueuedAt) in zip(run.lagMilliseconds, run.lagEnqueuedAtMilliseconds) {
                    if let outage, outage.region == neighbour, outage.window.contains(enqueuedAt) {
                        outageLags.append(lag)
                    } else {
                        lags.append(lag)
                    }
                }
            }
            let oneWay = cluster.topology.latency.nominalDelay(from: region, to: neighbour).secondsValue * 1000
            let bound =
                Double(configuration.maximumBatchDelayMilliseconds) + oneWay * (1 + cluster.topology.latency.jitterFraction)
                + Self.allowanceMilliseconds
            var row = Row(
                region: region, neighbour: neighbour, lag: LatencySummary(lags), outageLag: LatencySummary(outageLags),
                boundMilliseconds: bound)
            row.batchesSent = runs.reduce(0) { $0 + $1.batchesSent }
            row.batchesFailed = runs.reduce(0) { $0 + $1.batchesFailed }
            row.snapshotFallbacks = runs.reduce(0) { $0 + $1.snapshotFallbacks }
            row.pendingEntries = runs.last?.pendingEntries ?? 0
            return row
        }
    }

    public var targetMet: Bool { rows.allSatisfy { $0.lag.p99 <= $0.boundMilliseconds } }

    public func renderText() -> String {
        var lines = ["Replication to the neighbour (lag: write at the home to applied at the neighbour)"]
        let header = [
            "home", "neighbour", "entries", "p50 ms", "p95 ms", "p99 ms", "max ms", "bound ms", "batches", "failed", "snapshots", "pending",
        ]
        lines.append(Self.row(header))
        for row in rows {
            lines.append(
                Self.row([
                    row.region, row.neighbour, "\(row.lag.count)", ReplayReport.format(row.lag.p50), ReplayReport.format(row.lag.p95),
                    ReplayReport.format(row.lag.p99), ReplayReport.format(row.lag.maximum), ReplayReport.format(row.boundMilliseconds),
                    "\(row.batchesSent)", "\(row.batchesFailed)", "\(row.snapshotFallbacks)", "\(row.pendingEntries)",
                ]))
        }
        if let outage {
            for row in rows where row.outageLag.count > 0 {
                lines.append(
                    "  left out: \(row.outageLag.count) entries written toward \(outage.region) while it was down (p50 \(ReplayReport.format(row.outageLag.p50)) ms, max \(ReplayReport.format(row.outageLag.maximum)) ms): they wait for it by design"
                )
            }
        }
        lines.append("  replication lag p99 within the batch delay + one-way delay + 10 ms: \(targetMet ? "met" : "missed")")
        return lines.joined(separator: "\n") + "\n"
    }

    public func json() -> JSONValue {
        .array(
            rows.map { row in
                .object([
                    "home": .string(row.region),
                    "neighbour": .string(row.neighbour),
                    "lag": row.lag.json,
                    "lagDuringOutage": row.outageLag.json,
                    "boundMilliseconds": .number(row.boundMilliseconds),
                    "batchesSent": .integer(Int64(row.batchesSent)),
                    "batchesFailed": .integer(Int64(row.batchesFailed)),
                    "snapshotFallbacks": .integer(Int64(row.snapshotFallbacks)),
                    "pendingEntries": .integer(Int64(row.pendingEntries)),
                ])
            })
    }

    private static func row(_ cells: [String]) -> String {
        let widths = [10, 10, 8, 8, 8, 8, 8, 9, 8, 7, 10, 8]
        return "  "
            + cells.enumerated().map { index, cell in
                let width = widths[index]
                if index < 2 { return cell.padding(toLength: max(width, cell.count), withPad: " ", startingAt: 0) }
                return String(repeating: " ", count: max(0, width - cell.count)) + cell
            }.joined(separator: " ")
    }
}
