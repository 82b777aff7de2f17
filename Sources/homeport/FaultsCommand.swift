import Foundation
import Homeport

/// `homeport faults`: runs seeded fault-injection scenarios and checks the
/// failover invariants after each; a failing seed prints the command that
/// replays it.
enum FaultsCommand {
    static let usage = """
        usage: homeport faults [options]

        Runs fault-injection scenarios against three regions built from the
        server's own code, with a simulated network, clock and process lifetimes.
        Each seed picks a fault (home crash, home cut off from the linearizable
        store, home cut off from its neighbour, duplicated and lost batches, crash
        during reconcile, home and neighbour down together), drives clients
        through it, and checks the invariants: no acknowledged write lost (or,
        without a data dir, no more than the replication lag at the crash), no
        duplicated turn, no ledger status moving backward, no two regions serving
        a session in one epoch, a clear 503 while home and neighbour are down.
        Exits 0 when every scenario passed, 1 when one failed.

        options:
          --seed N       run only the scenario of seed N (a failing run prints it)
          --first N      the first seed of a range (default 1)
          --count N      how many seeds from --first (default 1000)
          --verbose      print each scenario's structured logs (JSON lines) to stderr
        """

    static func run(_ arguments: [String]) async -> Int32 {
        let options: CommandLineOptions
        do {
            options = try CommandLineOptions(arguments, valued: ["seed", "first", "count"], switches: ["help", "verbose"])
            if options.has("help") {
                print(usage)
                return 0
            }
            try options.rejectPositional()
        } catch {
            printError("homeport faults: \(error)\nRun `homeport faults --help` for the options.")
            return 2
        }

        let seeds: [UInt64]
        do {
            if let seed = try options.integer("seed", in: 0...Int.max) {
                seeds = [UInt64(seed)]
            } else {
                let first = try options.integer("first", in: 0...(Int.max - 1_000_000)) ?? 1
                let count = try options.integer("count", in: 1...1_000_000) ?? 1000
                seeds = (0..<count).map { UInt64(first + $0) }
            }
        } catch {
            printError("homeport faults: \(error)\nRun `homeport faults --help` for the options.")
            return 2
        }

        let sink = options.has("verbose") ? LogSink(minimumLevel: .debug) : LogSink.discarding
        var failed: [FaultOutcome] = []
        for seed in seeds {
            let scenario = FaultScenario(seed: seed)
            do {
                let outcome = try await FaultHarness(scenario: scenario, logger: Logger(label: "homeport.faults", sink: sink)).run()
                print(outcome.summary)
                if !outcome.passed {
                    failed.append(outcome)
                    for violation in outcome.violations.prefix(10) {
                        print("  violation: \(violation)")
                    }
                    if outcome.violations.count > 10 {
                        print("  … and \(outcome.violations.count - 10) more violations")
                    }
                    print("  replay: \(outcome.replayCommand)")
                }
            } catch {
                printError("homeport faults: seed \(seed) could not run: \(error)")
                return 2
            }
        }

        print("\(seeds.count - failed.count) of \(seeds.count) scenarios passed")
        return failed.isEmpty ? 0 : 1
    }
}
