import Testing

@testable import Homeport

/// The seeded fault-injection suite: 200 scenarios in the default run, in
/// four slices. `swift run homeport faults --count 2000` runs more.
///
/// Serialized: the harness keeps a thread of the concurrency pool busy, and
/// two of them at once would starve the lease renewals of the suites that
/// run real clusters beside it.
@Suite(.serialized) struct FaultInjectionTests {
    static func runSeeds(_ seeds: ClosedRange<UInt64>) async throws {
        for seed in seeds {
            let outcome = try await FaultHarness(scenario: FaultScenario(seed: seed)).run()
            #expect(
                outcome.passed,
                "\(outcome.summary)\n\(outcome.violations.prefix(5).joined(separator: "\n"))\nreplay: \(outcome.replayCommand)")
        }
    }

    @Test func seeds1To50() async throws { try await Self.runSeeds(1...50) }
    @Test func seeds51To100() async throws { try await Self.runSeeds(51...100) }
    @Test func seeds101To150() async throws { try await Self.runSeeds(101...150) }
    @Test func seeds151To200() async throws { try await Self.runSeeds(151...200) }

    @Test func everyKindRunsAndExercisesItsFault() async throws {
        var takeovers: [FaultScenario.Kind: Int] = [:]
        var reconciled: [FaultScenario.Kind: Int] = [:]
        for seed in UInt64(1)...12 {
            let outcome = try await FaultHarness(scenario: FaultScenario(seed: seed)).run()
            takeovers[outcome.scenario.kind, default: 0] += outcome.takeovers
            reconciled[outcome.scenario.kind, default: 0] += outcome.recordsReconciled
        }
        // A crash or a cut from the store ends in a takeover; a cut link or
        // lost batches must not.
        for kind in [FaultScenario.Kind.homeCrash, .storePartition, .crashDuringReconcile, .doubleFailure] {
            #expect(takeovers[kind, default: 0] > 0, "\(kind) caused no takeover")
        }
        #expect(takeovers[.neighbourPartition, default: 0] == 0)
        #expect(takeovers[.duplicatedBatches, default: 0] == 0)
        #expect(reconciled[.doubleFailure, default: 0] > 0)
    }

    @Test func sameSeedGivesSameScenario() {
        #expect(FaultScenario(seed: 77) == FaultScenario(seed: 77))
        #expect(FaultScenario(seed: 77) != FaultScenario(seed: 78))
        #expect(Set((UInt64(1)...6).map { FaultScenario(seed: $0).kind }).count == FaultScenario.Kind.allCases.count)
    }
}
