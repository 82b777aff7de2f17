import Foundation

/// Replication lag per home region after a run, against the bound the design
/// promises: the batch delay plus the one-way delay to the neighbour (at full
/// jitter) plus 10 ms.
public struct ReplicationReport: Sendable {
    public struct Row: Sendable {
        public var region: String
        public var neighbour: String
        public var lag: LatencySummary
        public var statistics: ReplicationShipper.Statistics
        public var boundMilliseconds: Double
    }

    public static let allowanceMilliseconds = 10.0
    public var rows: [Row]

    public init(cluster: EmbeddedCluster, configuration: ReplicationOutbox.Configuration) {
        rows = cluster.nodes.compactMap { node in
            guard let shipper = node.replication else { return nil }
            let statistics = shipper.statistics()
            let oneWay = cluster.topology.latency.nominalDelay(from: shipper.region, to: shipper.neighbour).secondsValue * 1000
            let bound =
                Double(configuration.maximumBatchDelayMilliseconds) + oneWay * (1 + cluster.topology.latency.jitterFraction)
                + Self.allowanceMilliseconds
            return Row(
                region: shipper.region, neighbour: shipper.neighbour, lag: LatencySummary(statistics.lagMilliseconds),
                statistics: statistics, boundMilliseconds: bound)
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
                    "\(row.statistics.batchesSent)", "\(row.statistics.batchesFailed)", "\(row.statistics.snapshotFallbacks)",
                    "\(row.statistics.pendingEntries)",
                ]))
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
                    "boundMilliseconds": .number(row.boundMilliseconds),
                    "batchesSent": .integer(Int64(row.statistics.batchesSent)),
                    "batchesFailed": .integer(Int64(row.statistics.batchesFailed)),
                    "snapshotFallbacks": .integer(Int64(row.statistics.snapshotFallbacks)),
                    "pendingEntries": .integer(Int64(row.statistics.pendingEntries)),
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
