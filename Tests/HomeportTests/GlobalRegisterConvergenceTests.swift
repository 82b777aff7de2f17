import Testing

@testable import Homeport

/// Router weights as a register value: model → weight.
func routerWeights(_ weights: [String: Double]) -> JSONValue {
    .object(weights.mapValues(JSONValue.number))
}

/// Scenarios of three regions on simulated time: us-east, us-west and
/// eu-west with one-way delays of 44 ms (us-east–us-west), 40 ms
/// (us-east–eu-west) and 68 ms (us-west–eu-west), and the default
/// anti-entropy interval of 1 s.
@Suite("Global register convergence")
struct GlobalRegisterConvergenceTests {
    static let name = "router-weights"

    @Test("push reaches each region after its delay")
    func pushDelay() async throws {
        let cluster = try GlobalStateCluster()
        let written = cluster.now

        let entry = try cluster.write(Self.name, routerWeights(["llama-70b": 0.7, "mistral-7b": 0.3]), at: "us-east")

        // Reads are local: the other regions do not have the write yet.
        #expect(cluster.registers("us-east").entry(Self.name) == entry)
        #expect(cluster.registers("eu-west").entry(Self.name) == nil)

        await cluster.run(until: written + 39)
        #expect(cluster.registers("eu-west").entry(Self.name) == nil)
        await cluster.run(until: written + 40)
        #expect(cluster.registers("eu-west").entry(Self.name) == entry)
        #expect(cluster.registers("us-west").entry(Self.name) == nil)
        await cluster.run(until: written + 44)
        #expect(cluster.registers("us-west").entry(Self.name) == entry)

        #expect(cluster.registers("eu-west").statistics().convergence.map(\.milliseconds) == [40])
        #expect(cluster.registers("us-west").statistics().convergence.map(\.milliseconds) == [44])

        // The acknowledgements come back after the same delays.
        #expect(cluster.registers("us-east").unacknowledgedCount(for: "us-west") == 1)
        await cluster.run(until: written + 88)
        #expect(cluster.registers("us-east").unacknowledgedCount(for: "us-west") == 0)
        #expect(cluster.registers("us-east").unacknowledgedCount(for: "eu-west") == 0)
    }

    /// Regions run their rounds either spread over the interval or all at
    /// once. The partition heals 1 ms after us-east's round, and in lockstep
    /// after every region's round, which is the worst moment for the bound.
    @Test("partition heals within interval plus delay", arguments: [false, true])
    func partitionHeals(lockstep: Bool) async throws {
        let cluster = try GlobalStateCluster()
        let interval = cluster.configuration.replication.antiEntropyInterval.wholeMilliseconds
        let bound = interval + cluster.network.maximumDelay.wholeMilliseconds
        let firstRound = cluster.now + 100
        let zero = Dictionary(uniqueKeysWithValues: cluster.regions.map { ($0, Duration.zero) })
        cluster.scheduleAntiEntropy(firstRound: firstRound, offsets: lockstep ? zero : nil)

        // us-east is cut off from both other regions; both sides write.
        cluster.network.cut("us-east", "us-west")
        cluster.network.cut("us-east", "eu-west")
        await cluster.run(for: .milliseconds(100))
        let east = try cluster.write(Self.name, routerWeights(["llama-70b": 0.7, "mistral-7b": 0.3]), at: "us-east")
        let eastOnly = try cluster.write("router-weights:canary", routerWeights(["llama-70b-canary": 0.05]), at: "us-east")
        await cluster.run(for: .milliseconds(500))
        let west = try cluster.write(Self.name, routerWeights(["llama-70b": 0.2, "mistral-7b": 0.8]), at: "us-west")
        await cluster.run(until: firstRound + 3 * interval + 1)

        #expect(west.stamp > east.stamp)
        #expect(cluster.registers("us-east").entry(Self.name) == east)
        #expect(cluster.registers("eu-west").entry(Self.name) == west)
        #expect(cluster.registers("us-west").entry("router-weights:canary") == nil)

        let healedAt = cluster.now
        cluster.network.heal("us-east", "us-west")
        cluster.network.heal("us-east", "eu-west")
        await cluster.run(until: healedAt + bound)

        for region in cluster.regions {
            #expect(cluster.registers(region).entry(Self.name) == west, "router weights at \(region)")
            #expect(cluster.registers(region).entry("router-weights:canary") == eastOnly, "canary weights at \(region)")
        }
        let afterHeal = cluster.regions.flatMap { region in
            cluster.registers(region).statistics().convergence.filter { $0.appliedAtMilliseconds >= healedAt }
        }
        #expect(afterHeal.count == 3)
        #expect(afterHeal.allSatisfy { $0.appliedAtMilliseconds <= healedAt + bound })
        let lastApplied = afterHeal.map(\.appliedAtMilliseconds).max() ?? 0
        print(
            "global registers converged \(lastApplied - healedAt) ms after the partition healed (bound \(bound) ms, rounds \(lockstep ? "in lockstep" : "spread"))"
        )
    }

    @Test("third region bridges a cut link")
    func bridgedByThirdRegion() async throws {
        let cluster = try GlobalStateCluster()
        let interval = cluster.configuration.replication.antiEntropyInterval.wholeMilliseconds
        cluster.scheduleAntiEntropy()
        cluster.network.cut("us-east", "us-west")
        await cluster.run(for: .milliseconds(10))
        let written = cluster.now

        let entry = try cluster.write(Self.name, routerWeights(["llama-70b": 1]), at: "us-east")
        await cluster.run(until: written + interval + 2 * cluster.network.maximumDelay.wholeMilliseconds)

        // us-west got the write from eu-west's digest exchange, with the link still cut.
        #expect(cluster.registers("us-west").entry(Self.name) == entry)
        #expect(cluster.registers("us-west").statistics().repairs == 1)
        #expect(cluster.registers("us-west").statistics().convergence.first?.path == .antiEntropy)
    }

    @Test("missed push repaired and counted")
    func missedPushRepaired() async throws {
        let cluster = try GlobalStateCluster()
        cluster.network.cut("us-east", "us-west")
        let entry = try cluster.write(Self.name, routerWeights(["llama-70b": 1]), at: "us-east")
        await cluster.run(for: .milliseconds(100))
        #expect(cluster.registers("us-west").entry(Self.name) == nil)
        #expect(cluster.registers("us-east").unacknowledgedCount(for: "us-west") == 1)

        cluster.network.heal("us-east", "us-west")
        cluster.scheduleAntiEntropy()
        await cluster.run(for: cluster.configuration.replication.antiEntropyInterval + cluster.network.maximumDelay)

        #expect(cluster.registers("us-west").entry(Self.name) == entry)
        #expect(cluster.registers("us-west").statistics().repairs == 1)
        #expect(cluster.registers("eu-west").statistics().repairs == 0)
        #expect(cluster.metrics.value("homeport_register_repairs_total", labels: ["region": "us-west"]) == 1)
        #expect(cluster.registers("us-east").unacknowledgedCount(for: "us-west") == 0)
    }

    @Test("simultaneous writes agree on one winner")
    func simultaneousWrites() async throws {
        let cluster = try GlobalStateCluster()
        cluster.scheduleAntiEntropy()

        let east = try cluster.write(Self.name, routerWeights(["llama-70b": 1]), at: "us-east")
        let west = try cluster.write(Self.name, routerWeights(["mistral-7b": 1]), at: "us-west")
        await cluster.run(for: .seconds(2))

        // Same millisecond, same counter: the region name decides.
        #expect(east.stamp.timestamp == west.stamp.timestamp)
        for region in cluster.regions {
            #expect(cluster.registers(region).entry(Self.name) == west, "router weights at \(region)")
        }
    }

    @Test("write after receipt wins everywhere")
    func causalOverwrite() async throws {
        let cluster = try GlobalStateCluster()

        let first = try cluster.write(Self.name, routerWeights(["llama-70b": 1]), at: "us-west")
        await cluster.run(for: .milliseconds(70))
        // eu-west changes the weights it received from us-west.
        let second = try cluster.write(Self.name, routerWeights(["llama-70b": 0.5, "mistral-7b": 0.5]), at: "eu-west")
        await cluster.run(for: .milliseconds(200))

        #expect(second.stamp > first.stamp)
        for region in cluster.regions {
            #expect(cluster.registers(region).entry(Self.name) == second, "router weights at \(region)")
        }
    }
}
