/// The one-way delay of the proxy in front of each etcd member's peer port,
/// chosen so that every round trip between two members equals the round
/// trip of the latency matrix.
///
/// All members agree on one peer URL per member (`--initial-cluster`), so the
/// delays cannot be set per pair. Each member advertises its proxy's URL
/// instead, and a member's proxy delays everything that member sends. In etcd
/// 3.4's rafthttp, member B's stream reader opens a long-lived GET to member
/// A's advertised peer URL, and A writes its raft messages for B into that
/// response. So the bytes A sends to B pass A's proxy (delay δ_A), and a round
/// trip A → B → A costs δ_A + δ_B. Snapshots and messages sent while a stream
/// is down take etcd's pipeline instead: a POST to B's URL, which pays δ_B
/// both ways.
///
/// For three members the system δ_A + δ_B = RTT(A, B) has one solution,
/// δ_A = (RTT(A, B) + RTT(A, C) − RTT(B, C)) / 2, where RTT is twice the
/// matrix's one-way delay. With 44 ms us-east↔us-west, 40 ms us-east↔eu-west
/// and 68 ms us-west↔eu-west it is 16 ms for us-east, 72 ms for us-west and
/// 64 ms for eu-west. One-way delays then differ from the matrix (us-east →
/// us-west takes 16 ms, the way back 72 ms), but every round trip, which is
/// what a consensus operation pays, matches it exactly. The proxies apply no
/// jitter.
public struct EtcdPeerDelays: Sendable, Equatable {
    /// Each region's proxy delay: how long everything its member sends to
    /// another member is held back.
    public let oneWay: [String: Duration]

    /// Solves the delays for a topology of exactly three regions.
    ///
    /// - Throws: `ConfigurationError` when the topology does not have three
    ///   regions, or when one region's round trips are so short that its delay
    ///   would be negative: RTT(A, B) + RTT(A, C) < RTT(B, C) breaks the
    ///   triangle inequality that proxies per member can model.
    public static func solve(_ topology: RegionTopology) throws(ConfigurationError) -> EtcdPeerDelays {
        let regions = topology.regionNames
        guard regions.count == 3 else {
            throw ConfigurationError(
                field: "regions",
                detail:
                    "a local cluster needs exactly three regions, one etcd member each, to set its peer delays from the round trips; the topology has \(regions.count) (\(regions.joined(separator: ", ")))"
            )
        }

        var oneWay: [String: Duration] = [:]
        for (index, region) in regions.enumerated() {
            let first = regions[(index + 1) % 3]
            let second = regions[(index + 2) % 3]
            let roundTripToFirst = roundTrip(topology.latency, region, first)
            let roundTripToSecond = roundTrip(topology.latency, region, second)
            let roundTripBetweenOthers = roundTrip(topology.latency, first, second)
            let delay = (roundTripToFirst + roundTripToSecond - roundTripBetweenOthers) / 2
            guard delay >= .zero else {
                throw ConfigurationError(
                    field: "latency.oneWayMilliseconds",
                    detail:
                        "the round trip \(first)↔\(second) (\(roundTripBetweenOthers.wholeMilliseconds) ms) is longer than the round trips \(region)↔\(first) and \(region)↔\(second) together (\(roundTripToFirst.wholeMilliseconds) + \(roundTripToSecond.wholeMilliseconds) ms), so no delay per member reproduces it; shorten it or lengthen the others"
                )
            }
            oneWay[region] = delay
        }
        return EtcdPeerDelays(oneWay: oneWay)
    }

    /// Returns the round trip between two members through their proxies.
    public func roundTrip(_ first: String, _ second: String) -> Duration {
        guard first != second else { return .zero }
        return (oneWay[first] ?? .zero) + (oneWay[second] ?? .zero)
    }

    /// Returns the matrix's nominal round trip: twice the one-way delay.
    private static func roundTrip(_ latency: LatencyMatrix, _ first: String, _ second: String) -> Duration {
        latency.nominalDelay(from: first, to: second) * 2
    }
}
