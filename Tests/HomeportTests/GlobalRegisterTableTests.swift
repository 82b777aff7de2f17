import Testing

@testable import Homeport

func registerStamp(_ physical: Int64, _ logical: UInt32 = 0, _ region: String = "us-east") -> RegisterStamp {
    RegisterStamp(timestamp: HybridTimestamp(physicalMilliseconds: physical, logical: logical), region: region)
}

@Suite("Global register table")
struct GlobalRegisterTableTests {
    func entry(_ name: String, _ value: JSONValue, _ stamp: RegisterStamp) -> GlobalRegisterEntry {
        GlobalRegisterEntry(name: name, value: value, stamp: stamp)
    }

    @Test("merge keeps the greatest stamp")
    func lastWriterWins() {
        var table = GlobalRegisterTable(limits: .init(), regionCount: 3)
        let old = entry("weights", .object(["llama": .integer(1)]), registerStamp(100))
        let new = entry("weights", .object(["llama": .integer(2)]), registerStamp(200, 0, "us-west"))

        #expect(table.merge(old) == .applied(previous: nil))
        #expect(table.merge(new) == .applied(previous: old.stamp))
        #expect(table.merge(old) == .stale)
        #expect(table.merge(new) == .stale)
        #expect(table.entry("weights") == new)
    }

    @Test("equal timestamps: greater region wins")
    func regionTieBreak() {
        var table = GlobalRegisterTable(limits: .init(), regionCount: 3)
        let east = entry("weights", .string("east"), registerStamp(100, 2, "us-east"))
        let west = entry("weights", .string("west"), registerStamp(100, 2, "us-west"))

        _ = table.merge(west)
        #expect(table.merge(east) == .stale)
        #expect(table.entry("weights")?.value == .string("west"))
    }

    @Test("merge order does not matter")
    func mergeOrderIndependent() {
        let entries = [
            entry("a", .integer(1), registerStamp(100, 0, "us-east")),
            entry("a", .integer(2), registerStamp(100, 1, "eu-west")),
            entry("a", .integer(3), registerStamp(99, 5, "us-west")),
            entry("b", .integer(4), registerStamp(50, 0, "us-west")),
            entry("b", .integer(5), registerStamp(50, 0, "us-east")),
        ]
        var results: [[String: GlobalRegisterEntry]] = []
        for permutation in permutations(entries) {
            var table = GlobalRegisterTable(limits: .init(), regionCount: 3)
            for item in permutation + permutation.reversed() {
                _ = table.merge(item)
            }
            results.append(table.entries)
        }

        #expect(results.count == 120)
        #expect(Set(results.map { $0["a"]!.value }) == [.integer(2)])
        #expect(Set(results.map { $0["b"]!.value }) == [.integer(4)])
    }

    @Test("write limit on new registers")
    func registerLimit() throws {
        var table = GlobalRegisterTable(limits: .init(maximumRegisters: 2), regionCount: 2)
        _ = try table.write("a", value: .integer(1), stamp: registerStamp(1))
        _ = try table.write("b", value: .integer(1), stamp: registerStamp(2))

        let error = #expect(throws: GlobalStateError.self) {
            try table.write("c", value: .integer(1), stamp: registerStamp(3))
        }
        #expect(error?.code == .registerLimitReached)
        #expect(error?.subject == "c")
        // An existing register can still be written.
        #expect(try table.write("a", value: .integer(2), stamp: registerStamp(4)).value == .integer(2))
        #expect(table.count == 2)
    }

    @Test("merge limit is per-region limit times regions")
    func mergeLimit() throws {
        var table = GlobalRegisterTable(limits: .init(maximumRegisters: 2), regionCount: 2)
        #expect(table.maximumMergedRegisters == 4)
        for (index, name) in ["a", "b", "c", "d"].enumerated() {
            #expect(table.merge(entry(name, .null, registerStamp(Int64(index), 0, "us-west"))) == .applied(previous: nil))
        }

        let outcome = table.merge(entry("e", .null, registerStamp(9, 0, "us-west")))

        guard case .rejected(let error) = outcome else {
            Issue.record("expected a rejection, got \(outcome)")
            return
        }
        #expect(error.code == .registerLimitReached)
        #expect(table.entry("e") == nil)
        // Updates of known registers still merge.
        #expect(table.merge(entry("a", .integer(1), registerStamp(10, 0, "us-west"))) == .applied(previous: registerStamp(0, 0, "us-west")))
    }

    @Test("value size limit on write and merge")
    func valueLimit() throws {
        var table = GlobalRegisterTable(limits: .init(maximumRegisters: 10, maximumValueBytes: 16), regionCount: 2)
        let fits = JSONValue.string(String(repeating: "x", count: 14))  // 16 bytes with quotes
        let tooLarge = JSONValue.string(String(repeating: "x", count: 15))

        #expect(try table.write("a", value: fits, stamp: registerStamp(1)).value == fits)
        let writeError = #expect(throws: GlobalStateError.self) {
            try table.write("a", value: tooLarge, stamp: registerStamp(2))
        }
        #expect(writeError?.code == .valueTooLarge)
        guard case .rejected(let error) = table.merge(entry("b", tooLarge, registerStamp(3, 0, "us-west"))) else {
            Issue.record("an oversized value was merged")
            return
        }
        #expect(error.code == .valueTooLarge)
        #expect(table.entry("a")?.value == fits)
    }

    @Test("difference lists both directions")
    func difference() throws {
        var table = GlobalRegisterTable(limits: .init(), regionCount: 2)
        _ = table.merge(entry("same", .integer(1), registerStamp(10)))
        _ = table.merge(entry("newer-here", .integer(1), registerStamp(20)))
        _ = table.merge(entry("newer-there", .integer(1), registerStamp(20)))
        _ = table.merge(entry("only-here", .integer(1), registerStamp(5)))
        let digest = [
            "same": registerStamp(10),
            "newer-here": registerStamp(19),
            "newer-there": registerStamp(20, 1),
            "only-there": registerStamp(1),
        ]

        let (newerHere, newerThere) = table.difference(from: digest)

        #expect(newerHere.map(\.name) == ["only-here", "newer-here"])
        #expect(newerThere == ["newer-there", "only-there"])
    }

    @Test("limits validate their ranges")
    func limitsValidation() {
        #expect(throws: ConfigurationError.self) { try GlobalRegisterTable.Limits(maximumRegisters: 0).validate() }
        #expect(throws: ConfigurationError.self) { try GlobalRegisterTable.Limits(maximumValueBytes: 2 << 20).validate() }
        #expect(throws: Never.self) { try GlobalRegisterTable.Limits().validate() }
    }

    private func permutations<Element>(_ items: [Element]) -> [[Element]] {
        guard items.count > 1 else { return [items] }
        var result: [[Element]] = []
        for index in items.indices {
            var rest = items
            let first = rest.remove(at: index)
            for tail in permutations(rest) {
                result.append([first] + tail)
            }
        }
        return result
    }
}

@Suite("Global register store")
struct GlobalRegisterStoreTests {
    static let regions = ["us-east", "us-west", "eu-west"]

    func makeStore(_ clock: ManualClock, limits: GlobalRegisterTable.Limits = .init()) throws -> GlobalRegisterStore {
        try GlobalRegisterStore(
            region: "us-east", regions: Self.regions, limits: limits, maximumForwardDrift: .seconds(60), clock: clock,
            metrics: MetricsRegistry(),
            logger: Logger(label: "test", sink: .discarding))
    }

    @Test("write after receipt wins over it")
    func causalWrite() throws {
        let clock = ManualClock()
        let store = try makeStore(clock)
        // us-west's clock runs 10 s ahead; its write arrives first.
        let remote = GlobalRegisterEntry(
            name: "weights", value: .string("west"), stamp: registerStamp(clock.nowMilliseconds() + 10_000, 0, "us-west"))

        #expect(store.apply([remote], from: "us-west", path: .push).applied == 1)
        let local = try store.write("weights", value: .string("east"))

        #expect(local.stamp > remote.stamp)
        #expect(store.entry("weights")?.value == .string("east"))
    }

    @Test("far-future entry rejected alone")
    func driftRejectsOneEntry() throws {
        let clock = ManualClock()
        let store = try makeStore(clock)
        let now = clock.nowMilliseconds()
        let entries = [
            GlobalRegisterEntry(name: "bad", value: .integer(1), stamp: registerStamp(now + 61_000, 0, "us-west")),
            GlobalRegisterEntry(name: "good", value: .integer(2), stamp: registerStamp(now - 5, 0, "us-west")),
        ]

        let report = store.apply(entries, from: "us-west", path: .push)

        #expect(report.applied == 1)
        #expect(report.rejected.map(\.name) == ["bad"])
        #expect(report.rejected.first?.error.code == .clockDrift)
        #expect(store.entry("bad") == nil)
        #expect(store.entry("good")?.value == .integer(2))
        #expect(store.clock.current.physicalMilliseconds == now)
    }

    @Test("convergence measured from stamp physical time")
    func convergenceSample() throws {
        let clock = ManualClock()
        let store = try makeStore(clock)
        let written = clock.nowMilliseconds()
        clock.advance(by: .milliseconds(75))

        store.apply(
            [GlobalRegisterEntry(name: "weights", value: .null, stamp: registerStamp(written, 0, "eu-west"))], from: "eu-west",
            path: .antiEntropy)
        let statistics = store.statistics()

        #expect(statistics.convergence.map(\.milliseconds) == [75])
        #expect(statistics.convergence.first?.origin == "eu-west")
        #expect(statistics.repairs == 1)
        #expect(statistics.appliedByPush == 0)
    }

    @Test("unacknowledged writes tracked per peer")
    func unacknowledged() throws {
        let clock = ManualClock()
        let store = try makeStore(clock)
        let first = try store.write("weights", value: .integer(1))

        #expect(store.unacknowledgedEntries(for: "us-west", maximumBytes: 1 << 20) == [first])
        #expect(store.unacknowledgedEntries(for: "eu-west", maximumBytes: 1 << 20) == [first])

        // A write made while the first was in flight stays unacknowledged.
        clock.advance(by: .milliseconds(1))
        let second = try store.write("weights", value: .integer(2))
        store.acknowledge([first], by: "us-west")
        #expect(store.unacknowledgedEntries(for: "us-west", maximumBytes: 1 << 20) == [second])

        store.acknowledge([second], by: "us-west")
        #expect(store.unacknowledgedCount(for: "us-west") == 0)
        #expect(store.unacknowledgedCount(for: "eu-west") == 1)
    }

    @Test("message prefix respects byte budget")
    func messagePrefix() throws {
        let clock = ManualClock()
        let store = try makeStore(clock)
        for name in ["a", "b", "c"] {
            clock.advance(by: .milliseconds(1))
            _ = try store.write(name, value: .string(String(repeating: "x", count: 98)))  // 100 bytes each
        }

        #expect(store.unacknowledgedEntries(for: "us-west", maximumBytes: 250).map(\.name) == ["a", "b"])
        // One entry always goes, even over the budget.
        #expect(store.unacknowledgedEntries(for: "us-west", maximumBytes: 10).map(\.name) == ["a"])
    }

    @Test("regions must be listed once each")
    func configuration() {
        let missing = #expect(throws: ConfigurationError.self) {
            try GlobalRegisterStore(
                region: "ap-south", regions: Self.regions, clock: ManualClock(), metrics: MetricsRegistry(),
                logger: Logger(label: "test", sink: .discarding))
        }
        let twice = #expect(throws: ConfigurationError.self) {
            try GlobalRegisterStore(
                region: "us-east", regions: Self.regions + ["us-west"], clock: ManualClock(), metrics: MetricsRegistry(),
                logger: Logger(label: "test", sink: .discarding))
        }
        #expect(missing?.field == "regions")
        #expect(twice?.field == "regions")
    }
}
