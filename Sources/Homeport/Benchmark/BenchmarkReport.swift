import Foundation

/// The results of `homeport bench`: per-operation tables by entry path, the
/// headline ratios, the roaming sweep and, with both targets, the modelled
/// against the measured consensus latency. Ratios are all-linearizable over
/// default, so 3.8 means the default design is 3.8 times faster.
public struct BenchmarkReport: Sendable {
    /// The operation the trace replay calls to read a session (the buffer's tail).
    public static let readOperation = "read_tail"
    public static let entryPaths = ["home-entry", "roaming-entry"]

    public var runs: [BenchmarkRun]
    /// The roaming share of the headline comparison and of the sample files.
    public var headlineShare: Double
    /// Facts about the setup (machine, matrix, leader, trace slice), printed
    /// and written to the JSON as given.
    public var setup: [(name: String, value: String)]

    public init(runs: [BenchmarkRun], headlineShare: Double, setup: [(name: String, value: String)]) {
        self.runs = runs
        self.headlineShare = headlineShare
        self.setup = setup
    }

    public var targets: [String] {
        var seen: [String] = []
        for run in runs where !seen.contains(run.target) { seen.append(run.target) }
        return seen
    }

    public var roamingShares: [Double] { Set(runs.map(\.roamingShare)).sorted() }

    public func run(_ target: String, _ mode: BenchmarkMode, share: Double) -> BenchmarkRun? {
        runs.first { $0.target == target && $0.mode == mode && $0.roamingShare == share }
    }

    /// Returns the p99 ratio (all-linearizable over default) of `operation`
    /// at `entry` (nil: both paths), or nil when either side has no samples.
    public func p99Ratio(_ target: String, share: Double, operation: String, entry: String?) -> Double? {
        guard let base = run(target, .defaultPolicy, share: share), let other = run(target, .allLinearizable, share: share)
        else { return nil }
        let baseline = LatencySummary(base.latencies(of: operation, entry: entry))
        let linearizable = LatencySummary(other.latencies(of: operation, entry: entry))
        guard baseline.count > 0, linearizable.count > 0, baseline.p99 > 0 else { return nil }
        return linearizable.p99 / baseline.p99
    }

    // MARK: Text

    public func renderText() -> String {
        var lines: [String] = ["Setup"]
        for (name, value) in setup {
            lines.append("  \(name): \(value)")
        }
        for target in targets {
            lines.append("")
            lines += renderOperations(target)
            lines.append("")
            lines += renderHeadline(target)
            lines.append("")
            lines += renderSweep(target)
        }
        if targets.count > 1 {
            lines.append("")
            lines += renderModelledAgainstMeasured()
        }
        lines.append("")
        lines += renderRunHealth()
        return lines.joined(separator: "\n")
    }

    private func renderOperations(_ target: String) -> [String] {
        var lines = [
            "\(target): latency per operation and entry path at \(Self.percent(headlineShare)) roaming (ms; ratio = all-linearizable p99 / default p99)",
            Self.row(["operation", "entry", "mode", "count", "p50", "p95", "p99", "p99.9", "p99 ratio"]),
        ]
        guard let base = run(target, .defaultPolicy, share: headlineShare),
            let other = run(target, .allLinearizable, share: headlineShare)
        else { return lines + ["  (no runs at this share)"] }

        for operation in Set(base.operations + other.operations).sorted() {
            for entry in Self.entryPaths {
                let ratio = p99Ratio(target, share: headlineShare, operation: operation, entry: entry)
                for (mode, run) in [(BenchmarkMode.defaultPolicy, base), (.allLinearizable, other)] {
                    let summary = LatencySummary(run.latencies(of: operation, entry: entry))
                    guard summary.count > 0 else { continue }
                    lines.append(
                        Self.row([
                            operation, entry, mode.rawValue, "\(summary.count)", Self.milliseconds(summary.p50),
                            Self.milliseconds(summary.p95), Self.milliseconds(summary.p99), Self.milliseconds(summary.p999),
                            mode == .allLinearizable ? ratio.map(Self.ratio) ?? "-" : "",
                        ]))
                }
            }
        }
        return lines
    }

    private func renderHeadline(_ target: String) -> [String] {
        var lines = ["\(target): headline (p99 of session reads, \(Self.readOperation))"]
        let cases: [(String, String?)] = [("home-entry reads", "home-entry"), ("all reads", nil)]
        for (label, entry) in cases {
            guard let base = run(target, .defaultPolicy, share: headlineShare),
                let other = run(target, .allLinearizable, share: headlineShare)
            else { continue }
            let baseline = LatencySummary(base.latencies(of: Self.readOperation, entry: entry))
            let linearizable = LatencySummary(other.latencies(of: Self.readOperation, entry: entry))
            let ratio = p99Ratio(target, share: headlineShare, operation: Self.readOperation, entry: entry).map(Self.ratio) ?? "-"
            lines.append(
                "  \(label) at \(Self.percent(headlineShare)) roaming: all-linearizable \(Self.milliseconds(linearizable.p99)) ms, default \(Self.milliseconds(baseline.p99)) ms, ratio \(ratio)"
            )
        }
        return lines
    }

    private func renderSweep(_ target: String) -> [String] {
        var lines = [
            "\(target): roaming sweep (p99 in ms of all reads and of all session operations)",
            Self.row(["roaming", "reads default", "reads all-lin", "ratio", "ops default", "ops all-lin", "ratio"]),
        ]
        for share in roamingShares {
            guard let base = run(target, .defaultPolicy, share: share), let other = run(target, .allLinearizable, share: share)
            else { continue }
            let readsBase = LatencySummary(base.latencies(of: Self.readOperation, entry: nil))
            let readsOther = LatencySummary(other.latencies(of: Self.readOperation, entry: nil))
            let allBase = LatencySummary(base.samples.values.flatMap { $0 })
            let allOther = LatencySummary(other.samples.values.flatMap { $0 })
            lines.append(
                Self.row([
                    Self.percent(share), Self.milliseconds(readsBase.p99), Self.milliseconds(readsOther.p99),
                    Self.ratio(readsOther.p99 / max(readsBase.p99, 0.001)), Self.milliseconds(allBase.p99),
                    Self.milliseconds(allOther.p99), Self.ratio(allOther.p99 / max(allBase.p99, 0.001)),
                ]))
        }
        return lines
    }

    private func renderModelledAgainstMeasured() -> [String] {
        var lines = [
            "All-linearizable session reads at \(Self.percent(headlineShare)) roaming: modelled (embedded) against measured (cluster), ms",
            Self.row(["entry", "modelled p50", "measured p50", "modelled p99", "measured p99"]),
        ]
        guard let modelled = run("embedded", .allLinearizable, share: headlineShare),
            let measured = run("cluster", .allLinearizable, share: headlineShare)
        else { return lines + ["  (needs both targets at this share)"] }
        for entry in Self.entryPaths {
            let left = LatencySummary(modelled.latencies(of: Self.readOperation, entry: entry))
            let right = LatencySummary(measured.latencies(of: Self.readOperation, entry: entry))
            lines.append(
                Self.row([
                    entry, Self.milliseconds(left.p50), Self.milliseconds(right.p50), Self.milliseconds(left.p99),
                    Self.milliseconds(right.p99),
                ]))
        }
        return lines
    }

    private func renderRunHealth() -> [String] {
        var lines = ["Replays", Self.row(["target", "mode", "roaming", "requests", "roamed", "errors", "lost", "seconds"])]
        if runs.contains(where: { $0.roamingShare > 0 && $0.roamingRequests == 0 }) {
            lines.append(
                "  note: some replays with a roaming share had no roaming request, because their trace slice has too few follow-up requests; replay more with --limit"
            )
        }
        for run in runs {
            lines.append(
                Self.row([
                    run.target, run.mode.rawValue, Self.percent(run.roamingShare), "\(run.requests)", "\(run.roamingRequests)",
                    "\(run.errors)", "\(run.lostAcknowledgedTurns)", String(format: "%.1f", run.wallSeconds),
                ]))
        }
        return lines
    }

    /// The number of failed calls, lost acknowledged writes and mismatched
    /// sessions over every replay; a clean benchmark has 0.
    public var failureCount: Int {
        runs.reduce(0) { $0 + $1.errors + $1.lostAcknowledgedTurns + $1.sessionsMismatched }
    }

    static func row(_ cells: [String]) -> String {
        "  "
            + cells.enumerated().map { index, cell in
                index < 3 ? cell.padding(toLength: 22, withPad: " ", startingAt: 0) : cell.leftPadded(to: 10)
            }
            .joined(separator: " ")
    }

    static func milliseconds(_ value: Double) -> String {
        String(format: value < 10 ? "%.2f" : "%.1f", value)
    }

    static func ratio(_ value: Double) -> String {
        String(format: "%.1f×", value)
    }

    public static func percent(_ share: Double) -> String {
        let value = share * 100
        return value == value.rounded() ? "\(Int(value))%" : String(format: "%.1f%%", value)
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
