import Foundation

/// The demo's report: per-operation latency split by local and forwarded,
/// errors, the end-of-run session check, and the latency targets.
public struct ReplayReport: Sendable {
    public struct Row: Sendable {
        public var key: OperationKey
        public var summary: LatencySummary
    }

    public struct PairRow: Sendable {
        public var pair: RegionPair
        public var summary: LatencySummary
        /// The matrix's round trip with full jitter both ways, plus the 5 ms allowance.
        public var boundMilliseconds: Double
    }

    public var source: String
    public var outcome: ReplayOutcome
    public var configuration: ReplayConfiguration
    public var rows: [Row]
    public var local: LatencySummary
    public var forwarded: LatencySummary
    public var pairs: [PairRow]
    /// Largest matrix round trip with full jitter, plus 5 ms.
    public var forwardedBoundMilliseconds: Double
    public var errorCount: Int

    /// The allowance on top of the matrix round trip for a forwarded call.
    public static let forwardingAllowanceMilliseconds = 5.0
    /// The target for local session operations at p99.
    public static let localTargetMilliseconds = 2.0

    public init(source: String, outcome: ReplayOutcome, configuration: ReplayConfiguration, latency: LatencyMatrix, regions: [String]) {
        self.source = source
        self.outcome = outcome
        self.configuration = configuration

        let samples = outcome.recorder.samples
        rows = samples.keys.sorted().map { Row(key: $0, summary: LatencySummary(samples[$0]!)) }
        local = LatencySummary(samples.filter { $0.key.path != "forwarded" }.flatMap(\.value))
        forwarded = LatencySummary(samples.filter { $0.key.path == "forwarded" }.flatMap(\.value))

        var largest = 0.0
        for first in regions {
            for second in regions where first < second {
                largest = max(largest, latency.maximumRoundTrip(between: first, and: second).secondsValue * 1000)
            }
        }
        forwardedBoundMilliseconds = largest + Self.forwardingAllowanceMilliseconds
        pairs = outcome.recorder.forwardedByPair.sorted { ($0.key.first, $0.key.second) < ($1.key.first, $1.key.second) }.map {
            pair, values in
            PairRow(
                pair: pair, summary: LatencySummary(values),
                boundMilliseconds: latency.maximumRoundTrip(between: pair.first, and: pair.second).secondsValue * 1000
                    + Self.forwardingAllowanceMilliseconds)
        }
        errorCount = outcome.recorder.errors.values.reduce(0, +)
    }

    public var localTargetMet: Bool { local.p99 < Self.localTargetMilliseconds }
    public var forwardedTargetMet: Bool { forwarded.count == 0 || forwarded.p99 <= forwardedBoundMilliseconds }

    public func renderText() -> String {
        var lines: [String] = []
        let outcome = self.outcome
        lines.append("Replay of \(source)")
        lines.append(
            "  \(outcome.requestsReplayed) requests in \(outcome.sessionsReplayed) sessions, \(outcome.roamingRequests) roaming, \(outcome.toolCallRequests) with a tool call"
        )
        lines.append(
            "  time compression \(Self.format(configuration.timeCompression))x, wall time \(Self.format(outcome.wallSeconds)) s, seed \(configuration.seed)"
        )
        lines.append("")
        lines.append(Self.pad(["operation", "path", "count", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"]))
        let errors = outcome.recorder.errors
        for row in rows {
            let errorCount = row.key.path == "local" ? errors[row.key.operation, default: 0] : 0
            lines.append(Self.pad(Self.cells(row.key.operation, row.key.path, row.summary) + ["\(errorCount)"]))
        }
        for (operation, count) in errors.sorted(by: { $0.key < $1.key }) where !rows.contains(where: { $0.key.operation == operation }) {
            lines.append(Self.pad([operation, "-", "0", "-", "-", "-", "-", "\(count)"]))
        }
        lines.append(Self.pad(Self.cells("all session operations", "local", local) + [""]))
        lines.append(Self.pad(Self.cells("all session operations", "forwarded", forwarded) + [""]))
        lines.append("")

        if !pairs.isEmpty {
            lines.append("Forwarded calls by region pair (bound: the matrix round trip at full jitter + 5 ms)")
            lines.append(Self.pad(["pair", "count", "p50 ms", "p99 ms", "max ms", "bound ms"]))
            for row in pairs {
                lines.append(
                    Self.pad([
                        "\(row.pair.first)-\(row.pair.second)", "\(row.summary.count)", Self.format(row.summary.p50),
                        Self.format(row.summary.p99), Self.format(row.summary.maximum), Self.format(row.boundMilliseconds),
                    ]))
            }
            lines.append("")
        }

        let standbyReads = rows.filter { $0.key.path == "standby" }.map(\.summary.count).reduce(0, +)
        if standbyReads > 0 || outcome.roamingRequests > 0 {
            let behind = LatencySummary(outcome.recorder.standbyEntriesBehind)
            lines.append("Stale-tolerant reads at the neighbour")
            lines.append(
                "  \(standbyReads) tail reads entering away from the home (\(outcome.roamingRequests) roaming requests, plus any during a failure) were served from a standby copy"
            )
            lines.append(
                "  entries behind the home's last report: p50 \(Int(behind.p50)), p99 \(Int(behind.p99)), max \(Int(behind.maximum)); with a known gap: \(outcome.recorder.standbyGaps)"
            )
            lines.append("")
        }

        if let failover = outcome.failover {
            lines.append("Failover")
            let memory = failover.durable ? "it rebuilt its sessions from its session log" : "memory lost, no data dir"
            lines.append(
                "  \(failover.region) crashed at \(Self.format(failover.downAtSeconds)) s and came back at \(Self.format(failover.upAtSeconds)) s (\(memory))"
            )
            let firstServed = failover.firstRehomedResponseSeconds.map { "\(Self.format($0)) s" } ?? "never"
            lines.append("  time from the crash to the first request served by the new home: \(firstServed)")
            lines.append(
                "  sessions re-homed: \(failover.sessionsRehomed); responses marked as possibly missing the old home's last writes: \(failover.responsesWithReplicationGap)"
            )
            if let reconcile = failover.reconcile {
                lines.append(
                    "  reconcile forward to \(reconcile.to): \(reconcile.sessions) sessions, \(reconcile.recordsShipped) records shipped, \(reconcile.recordsMerged) entries merged at the new home"
                )
            } else {
                lines.append("  reconcile forward: nothing to ship (the region came back empty)")
            }
            if failover.durable {
                lines.append("  acknowledged turns lost: \(outcome.lostAcknowledgedTurns) (must be 0 with a data dir)")
            } else {
                lines.append(
                    "  acknowledged turns lost: \(outcome.lostAcknowledgedTurns), within the recovery point of \(failover.recoveryPointEntries) entries not yet replicated at the crash"
                )
            }
            lines.append("")
        }

        if let cross = outcome.crossSession {
            lines.append(
                contentsOf: Self.crossSessionLines(
                    cross, reserve: rows.first { $0.key.operation == "reserve_quota" && $0.key.path == "local" }?.summary))
        }

        lines.append("Targets")
        lines.append(
            "  local session operations p99 \(Self.format(local.p99)) ms (target < \(Self.format(Self.localTargetMilliseconds)) ms): \(localTargetMet ? "met" : "missed")"
        )
        lines.append(
            "  forwarded operations p99 \(Self.format(forwarded.p99)) ms (target <= \(Self.format(forwardedBoundMilliseconds)) ms): \(forwardedTargetMet ? "met" : "missed")"
        )
        lines.append(
            "  sessions checked at their home after the replay: \(outcome.sessionsVerified) hold every turn, \(outcome.sessionsMismatched) do not"
        )
        lines.append("  retries \(outcome.recorder.retries), errors \(errorCount)")
        for message in outcome.recorder.firstErrors {
            lines.append("  error: \(message)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    public func json() -> JSONValue {
        .object([
            "source": .string(source),
            "requests": .integer(Int64(outcome.requestsReplayed)),
            "sessions": .integer(Int64(outcome.sessionsReplayed)),
            "roamingRequests": .integer(Int64(outcome.roamingRequests)),
            "toolCallRequests": .integer(Int64(outcome.toolCallRequests)),
            "wallSeconds": .number(outcome.wallSeconds),
            "timeCompression": .number(configuration.timeCompression),
            "roamingShare": .number(configuration.roamingShare),
            "seed": .integer(Int64(bitPattern: configuration.seed)),
            "operations": .array(
                rows.map { row in
                    var fields: [String: JSONValue] = ["operation": .string(row.key.operation), "path": .string(row.key.path)]
                    if case .object(let summary) = row.summary.json { fields.merge(summary) { $1 } }
                    return .object(fields)
                }),
            "errors": .object(outcome.recorder.errors.mapValues { .integer(Int64($0)) }),
            "errorCount": .integer(Int64(errorCount)),
            "retries": .integer(Int64(outcome.recorder.retries)),
            "local": local.json,
            "forwarded": forwarded.json,
            "forwardedByPair": .array(
                pairs.map { row in
                    .object([
                        "pair": .array([.string(row.pair.first), .string(row.pair.second)]),
                        "latency": row.summary.json,
                        "boundMilliseconds": .number(row.boundMilliseconds),
                    ])
                }),
            "targets": .object([
                "localP99Milliseconds": .number(Self.localTargetMilliseconds),
                "localMet": .bool(localTargetMet),
                "forwardedP99Milliseconds": .number(forwardedBoundMilliseconds),
                "forwardedMet": .bool(forwardedTargetMet),
            ]),
            "standbyReads": .integer(Int64(rows.filter { $0.key.path == "standby" }.map(\.summary.count).reduce(0, +))),
            "standbyEntriesBehind": LatencySummary(outcome.recorder.standbyEntriesBehind).json,
            "standbyReadsWithGap": .integer(Int64(outcome.recorder.standbyGaps)),
            "sessionsVerified": .integer(Int64(outcome.sessionsVerified)),
            "lostAcknowledgedTurns": .integer(Int64(outcome.lostAcknowledgedTurns)),
            "failover": outcome.failover.map { failover in
                .object([
                    "region": .string(failover.region),
                    "downAtSeconds": .number(failover.downAtSeconds),
                    "upAtSeconds": .number(failover.upAtSeconds),
                    "firstRehomedResponseSeconds": failover.firstRehomedResponseSeconds.map { .number($0) } ?? .null,
                    "sessionsRehomed": .integer(Int64(failover.sessionsRehomed)),
                    "responsesWithReplicationGap": .integer(Int64(failover.responsesWithReplicationGap)),
                    "durable": .bool(failover.durable),
                    "recoveryPointEntries": .integer(Int64(failover.recoveryPointEntries)),
                    "sessionsReconciled": .integer(Int64(failover.reconcile?.sessions ?? 0)),
                    "recordsShipped": .integer(Int64(failover.reconcile?.recordsShipped ?? 0)),
                    "entriesReconciled": .integer(Int64(failover.reconcile?.recordsMerged ?? 0)),
                ])
            } ?? .null,
            "sessionsMismatched": .integer(Int64(outcome.sessionsMismatched)),
            "crossSession": outcome.crossSession.map(Self.crossSessionJSON) ?? .null,
        ])
    }

    /// Returns the share of granted reservations served from a lease chunk, from 0 to 1.
    static func chunkShare(_ cross: CrossSessionOutcome) -> Double {
        cross.reservationsGranted == 0 ? 0 : Double(cross.reservationsFromChunk) / Double(cross.reservationsGranted)
    }

    private static func crossSessionLines(_ cross: CrossSessionOutcome, reserve: LatencySummary?) -> [String] {
        var lines = ["Quotas, billing and router weights"]
        lines.append(
            "  reservations: \(cross.reservationsGranted) granted, \(cross.reservationsDenied) denied; \(format(chunkShare(cross) * 100))% served from a local lease chunk (target >= 99%)"
        )
        if let reserve {
            lines.append("  local reservation latency: p50 \(format(reserve.p50)) ms, p99 \(format(reserve.p99)) ms (target < 2 ms)")
        }
        for (region, audit) in cross.quotaAudits.sorted(by: { $0.key < $1.key }) {
            let overspend = audit["audit"]?["overspend"]?.integerValue ?? audit["overspend"]?.integerValue
            lines.append(
                "  quota audit at \(region): \(audit.serializedString().prefix(400))\(overspend.map { " (overspend \($0))" } ?? "")")
        }
        let billed = cross.billedTokens.map { "\($0)" } ?? "unread"
        let match = cross.billedTokens == cross.recordedTokens ? "equal" : "NOT equal"
        lines.append(
            "  billing: \(billed) tokens billed in \(cross.billedRecords.map { "\($0)" } ?? "?") records; \(cross.recordedTokens) recorded and \(cross.committedTokens) committed against the quota: \(match)"
        )
        if let at = cross.weightChangeAtSeconds {
            let regions = cross.weightConvergenceMilliseconds.sorted { $0.key < $1.key }.map { "\($0.key) \(format($0.value)) ms" }
            lines.append(
                "  router weights changed at \(format(at)) s; served by the other regions after: \(regions.joined(separator: ", "))")
        }
        lines.append("")
        return lines
    }

    private static func crossSessionJSON(_ cross: CrossSessionOutcome) -> JSONValue {
        .object([
            "reservationsGranted": .integer(Int64(cross.reservationsGranted)),
            "reservationsDenied": .integer(Int64(cross.reservationsDenied)),
            "reservationsFromChunk": .integer(Int64(cross.reservationsFromChunk)),
            "chunkShare": .number(chunkShare(cross)),
            "committedTokens": .integer(cross.committedTokens),
            "recordedTokens": .integer(cross.recordedTokens),
            "billedTokens": cross.billedTokens.map { .integer($0) } ?? .null,
            "billedRecords": cross.billedRecords.map { .integer($0) } ?? .null,
            "quotaAudits": .object(cross.quotaAudits),
            "weightChangeAtSeconds": cross.weightChangeAtSeconds.map { .number($0) } ?? .null,
            "weightConvergenceMilliseconds": .object(cross.weightConvergenceMilliseconds.mapValues { .number($0) }),
        ])
    }

    private static func cells(_ operation: String, _ path: String, _ summary: LatencySummary) -> [String] {
        [operation, path, "\(summary.count)", format(summary.p50), format(summary.p95), format(summary.p99), format(summary.maximum)]
    }

    static func format(_ value: Double) -> String {
        String(format: value < 10 ? "%.2f" : "%.1f", value)
    }

    private static func pad(_ cells: [String]) -> String {
        let widths = [24, 10, 8, 9, 9, 9, 9, 8]
        let padded = cells.enumerated().map { index, cell in
            let width = index < widths.count ? widths[index] : 10
            if index == 0 { return cell.padding(toLength: max(width, cell.count), withPad: " ", startingAt: 0) }
            return String(repeating: " ", count: max(0, width - cell.count)) + cell
        }
        return "  " + padded.joined(separator: " ")
    }
}
