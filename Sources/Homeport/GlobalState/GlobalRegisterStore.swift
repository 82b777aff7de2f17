import Synchronization

/// One region's global registers: the table, the region's hybrid logical
/// clock, and which local writes each peer region has not acknowledged yet.
///
/// Reads are local and never wait for another region. A local write is
/// stamped with the clock and stored at once; `GlobalRegisterReplicator`
/// then pushes it to every peer and keeps resending it in anti-entropy
/// exchanges until that peer acknowledges it. Entries from peers are merged
/// last writer wins, and each merge moves the clock past the received stamp,
/// so a later local write always wins over what the region has seen.
///
/// All nodes of a region share one store, so their reads agree.
/// NOTE: the store lives in memory, so nodes of one region in different
/// processes each hold their own copy, which converges only through
/// anti-entropy with other regions, and a restarted node starts empty until
/// anti-entropy refills it.
public final class GlobalRegisterStore: Sendable {
    /// The path by which an entry reached this region, a metric label.
    public enum Path: String, Sendable {
        /// A push that followed the write.
        case push
        /// An anti-entropy exchange, which repairs a missed push.
        case antiEntropy = "anti-entropy"
    }

    /// The outcome of merging received entries.
    public struct ApplyReport: Sendable, Equatable {
        public var applied = 0
        public var stale = 0
        /// Entries not stored, with the reason.
        public var rejected: [(name: String, error: GlobalStateError)] = []

        public static func == (lhs: ApplyReport, rhs: ApplyReport) -> Bool {
            lhs.applied == rhs.applied && lhs.stale == rhs.stale
                && lhs.rejected.map(\.name) == rhs.rejected.map(\.name) && lhs.rejected.map(\.error) == rhs.rejected.map(\.error)
        }
    }

    /// One entry written at another region and applied here.
    public struct ConvergenceSample: Sendable, Equatable {
        public var name: String
        /// The region that wrote the entry.
        public var origin: String
        public var path: Path
        /// When this region applied it, in milliseconds since the Unix epoch.
        public var appliedAtMilliseconds: Int64
        /// `appliedAtMilliseconds` minus the physical part of the entry's
        /// stamp, floored at 0: write to visible here, as far as the two
        /// regions' clocks agree.
        public var milliseconds: Int64
    }

    /// Counters and samples, for reports and tests.
    public struct Statistics: Sendable, Equatable {
        public var registers: Int
        /// Entries from peers that changed this table, by path.
        public var appliedByPush: Int
        /// Entries applied through anti-entropy: missed pushes repaired.
        public var repairs: Int
        public var rejected: Int
        /// At most `maximumConvergenceSamples`, oldest first.
        public var convergence: [ConvergenceSample]
    }

    private struct EntryWaiter {
        let name: String
        let stamp: RegisterStamp
        let continuation: CheckedContinuation<Void, Never>
    }

    private struct State {
        var table: GlobalRegisterTable
        /// For each peer region, the names of local writes it has not acknowledged.
        var unacknowledged: [String: Set<String>]
        var entryWaiters: [EntryWaiter] = []
        /// The replicator's push loop, waiting for a local write.
        var writeWaiter: CheckedContinuation<Void, Never>?
        /// Set by a local write while no push loop waits, so the next wait returns at once.
        var writePending = false
        var appliedByPush = 0
        var repairs = 0
        var rejected = 0
        var convergence: [ConvergenceSample] = []
    }

    /// Samples kept for `statistics()`; the histogram metric counts every one.
    public static let maximumConvergenceSamples = 100_000

    public let region: String
    /// The other regions, which receive this region's writes.
    public let peers: [String]
    public let limits: GlobalRegisterTable.Limits
    /// The maximum number of registers that merges may bring this region to,
    /// and the maximum number of entries in one message between regions.
    public let maximumMergedRegisters: Int
    public let clock: HybridLogicalClock
    private let wallClock: any WallClock
    private let metrics: MetricsRegistry
    private let logger: Logger
    /// The table, the unacknowledged writes per peer, and the waiters.
    private let state: Mutex<State>

    /// - Parameters:
    ///   - regions: every region of the deployment, this one included.
    ///   - maximumForwardDrift: how far ahead of the wall clock a received
    ///     stamp may be; entries beyond it are rejected.
    public init(
        region: String, regions: [String], limits: GlobalRegisterTable.Limits = GlobalRegisterTable.Limits(),
        maximumForwardDrift: Duration = HybridLogicalClock.defaultMaximumForwardDrift, clock: any WallClock,
        metrics: MetricsRegistry, logger: Logger
    ) throws(ConfigurationError) {
        try limits.validate()
        guard Set(regions).count == regions.count else {
            throw ConfigurationError(field: "regions", detail: "the regions \(regions) name a region twice")
        }
        guard regions.contains(region) else {
            throw ConfigurationError(field: "regions", detail: "the regions \(regions) do not include this region, \(region)")
        }
        guard maximumForwardDrift >= .zero else {
            throw ConfigurationError(field: "maximumForwardDrift", detail: "must not be negative, got \(maximumForwardDrift)")
        }
        let peers = regions.filter { $0 != region }
        self.region = region
        self.peers = peers
        self.limits = limits
        self.clock = HybridLogicalClock(clock: clock, maximumForwardDrift: maximumForwardDrift)
        self.wallClock = clock
        self.metrics = metrics
        self.logger = logger.with(["region": region])
        let table = GlobalRegisterTable(limits: limits, regionCount: Set(regions).count)
        self.maximumMergedRegisters = table.maximumMergedRegisters
        self.state = Mutex(State(table: table, unacknowledged: Dictionary(uniqueKeysWithValues: peers.map { ($0, []) })))
    }

    // MARK: Local reads and writes

    public func entry(_ name: String) -> GlobalRegisterEntry? {
        state.withLock { $0.table.entry(name) }
    }

    /// Returns every register, sorted by name.
    public func entries() -> [GlobalRegisterEntry] {
        state.withLock { $0.table.entries.values.sorted { $0.name < $1.name } }
    }

    /// Writes a register locally, stamped now, and marks it for every peer.
    ///
    /// - Throws: `GlobalStateError.valueTooLarge` or `.registerLimitReached`;
    ///   nothing is stored or sent.
    public func write(_ name: String, value: JSONValue) throws(GlobalStateError) -> GlobalRegisterEntry {
        let (entry, waiters, writeWaiter) = try state.withLock { state throws(GlobalStateError) in
            let stamp = RegisterStamp(timestamp: clock.now(), region: region)
            let entry = try state.table.write(name, value: value, stamp: stamp)
            for peer in peers {
                state.unacknowledged[peer, default: []].insert(name)
            }
            let waiters = Self.takeSatisfiedWaiters(&state)
            var writeWaiter: CheckedContinuation<Void, Never>?
            if let waiting = state.writeWaiter {
                writeWaiter = waiting
                state.writeWaiter = nil
            } else {
                state.writePending = true
            }
            return (entry, waiters, writeWaiter)
        }

        writeWaiter?.resume()
        for waiter in waiters { waiter.resume() }
        metrics.setGauge(
            "homeport_registers", help: "Global registers this region contains.", labels: ["region": region], to: Double(count))
        return entry
    }

    public var count: Int { state.withLock { $0.table.count } }

    // MARK: Entries from peers

    /// Merges entries received from `sender` (a peer region), last writer
    /// wins, and records the convergence time of each entry that changed the
    /// table. An entry whose stamp is too far in the future, or that breaks a
    /// limit, is rejected alone; the others are still merged.
    @discardableResult
    public func apply(_ entries: [GlobalRegisterEntry], from sender: String, path: Path) -> ApplyReport {
        let now = wallClock.nowMilliseconds()
        var report = ApplyReport()
        var samples: [ConvergenceSample] = []

        let (waiters, rejectedTotal) = state.withLock { state in
            for entry in entries {
                let outcome: GlobalRegisterTable.MergeOutcome
                do throws(GlobalStateError) {
                    try clock.update(received: entry.stamp.timestamp)
                    outcome = state.table.merge(entry)
                } catch {
                    outcome = .rejected(error)
                }

                switch outcome {
                case .applied:
                    report.applied += 1
                    if entry.stamp.region != region {
                        samples.append(
                            ConvergenceSample(
                                name: entry.name, origin: entry.stamp.region, path: path, appliedAtMilliseconds: now,
                                milliseconds: max(0, now - entry.stamp.timestamp.physicalMilliseconds)))
                    }
                case .stale:
                    report.stale += 1
                case .rejected(let error):
                    report.rejected.append((entry.name, error))
                }
            }

            switch path {
            case .push: state.appliedByPush += report.applied
            case .antiEntropy: state.repairs += report.applied
            }
            state.rejected += report.rejected.count
            let room = max(0, Self.maximumConvergenceSamples - state.convergence.count)
            state.convergence.append(contentsOf: samples.prefix(room))
            return (Self.takeSatisfiedWaiters(&state), state.rejected)
        }

        for waiter in waiters { waiter.resume() }
        record(report, samples: samples, from: sender, path: path, rejectedTotal: rejectedTotal)
        return report
    }

    private func record(_ report: ApplyReport, samples: [ConvergenceSample], from sender: String, path: Path, rejectedTotal: Int) {
        for sample in samples {
            metrics.observe(
                "homeport_register_convergence_seconds",
                help: "Time from a global register write (its hybrid-logical-clock physical time) to its application at another region.",
                labels: ["region": region, "origin": sample.origin], seconds: Double(sample.milliseconds) / 1000)
        }
        if path == .antiEntropy, report.applied > 0 {
            metrics.increment(
                "homeport_register_repairs_total", help: "Global register entries applied through anti-entropy: missed pushes repaired.",
                labels: ["region": region], by: Double(report.applied))
        }
        for (outcome, count) in [("applied", report.applied), ("stale", report.stale), ("rejected", report.rejected.count)] where count > 0
        {
            metrics.increment(
                "homeport_register_entries_received_total", help: "Global register entries received from other regions, by outcome.",
                labels: ["region": region, "path": path.rawValue, "outcome": outcome], by: Double(count))
        }
        if report.applied > 0 {
            metrics.setGauge(
                "homeport_registers", help: "Global registers this region contains.", labels: ["region": region], to: Double(count))
        }

        // Log the first rejection and then every hundredth, because a peer
        // with a wrong clock repeats its entries in every exchange.
        let previousTotal = rejectedTotal - report.rejected.count
        if let first = report.rejected.first, previousTotal == 0 || previousTotal / 100 != rejectedTotal / 100 {
            logger.warning(
                "global register entries rejected",
                ["from": sender, "register": first.name, "count": "\(report.rejected.count)", "error": "\(first.error)"])
        }
    }

    // MARK: Anti-entropy

    public func digest() -> [String: RegisterStamp] {
        state.withLock { $0.table.digest() }
    }

    /// Compares this region's table with a peer's digest; see `GlobalRegisterTable.difference(from:)`.
    public func difference(from digest: [String: RegisterStamp]) -> (newerHere: [GlobalRegisterEntry], newerThere: [String]) {
        state.withLock { $0.table.difference(from: digest) }
    }

    /// Returns the current entries of the named registers, skipping names this region lacks.
    public func entries(named names: [String]) -> [GlobalRegisterEntry] {
        state.withLock { state in names.compactMap { state.table.entry($0) } }
    }

    /// Returns the local writes `peer` has not acknowledged, oldest stamp
    /// first, up to `maximumBytes` of values (at least one entry).
    public func unacknowledgedEntries(for peer: String, maximumBytes: Int) -> [GlobalRegisterEntry] {
        let entries = state.withLock { state in
            (state.unacknowledged[peer] ?? []).compactMap { state.table.entry($0) }.sorted { $0.stamp < $1.stamp }
        }
        return Self.prefix(entries, maximumBytes: maximumBytes)
    }

    /// Records that `peer` stored `entries` (or has newer ones). A name
    /// written again since the entry was sent stays unacknowledged.
    public func acknowledge(_ entries: [GlobalRegisterEntry], by peer: String) {
        state.withLock { state in
            for entry in entries where state.table.entry(entry.name)?.stamp == entry.stamp {
                state.unacknowledged[peer]?.remove(entry.name)
            }
        }
    }

    /// Returns the number of local writes `peer` has not acknowledged.
    public func unacknowledgedCount(for peer: String) -> Int {
        state.withLock { $0.unacknowledged[peer]?.count ?? 0 }
    }

    /// Returns the longest prefix of `entries` whose values fit in
    /// `maximumBytes`, and at least the first entry.
    static func prefix(_ entries: [GlobalRegisterEntry], maximumBytes: Int) -> [GlobalRegisterEntry] {
        var total = 0
        var count = 0
        for entry in entries {
            total += entry.valueBytes
            if count > 0, total > maximumBytes { break }
            count += 1
        }
        return Array(entries.prefix(count))
    }

    // MARK: Waiting

    /// Returns once a local write has happened since the last call returned,
    /// or when the calling task is cancelled. For the one push loop.
    public func waitForLocalWrite() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.writePending || Task.isCancelled {
                        state.writePending = false
                        return true
                    }
                    state.writeWaiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                defer { state.writeWaiter = nil }
                return state.writeWaiter
            }
            waiter?.resume()
        }
    }

    /// Returns once register `name` has `stamp` or a greater one here. It
    /// waits without bound, so a caller that may wait for an entry that never
    /// comes races it with a deadline.
    public func waitForEntry(_ name: String, atLeast stamp: RegisterStamp) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let present = state.withLock { state -> Bool in
                if let current = state.table.entry(name), current.stamp >= stamp { return true }
                state.entryWaiters.append(EntryWaiter(name: name, stamp: stamp, continuation: continuation))
                return false
            }
            if present { continuation.resume() }
        }
    }

    private static func takeSatisfiedWaiters(_ state: inout State) -> [CheckedContinuation<Void, Never>] {
        guard !state.entryWaiters.isEmpty else { return [] }
        var satisfied: [CheckedContinuation<Void, Never>] = []
        state.entryWaiters.removeAll { waiter in
            guard let current = state.table.entry(waiter.name), current.stamp >= waiter.stamp else { return false }
            satisfied.append(waiter.continuation)
            return true
        }
        return satisfied
    }

    public func statistics() -> Statistics {
        state.withLock { state in
            Statistics(
                registers: state.table.count, appliedByPush: state.appliedByPush, repairs: state.repairs, rejected: state.rejected,
                convergence: state.convergence)
        }
    }
}
