/// The latency of one consensus operation entering at each region, modelled
/// from the latency matrix for a Raft cluster with one member per region.
///
/// An operation entering at region R goes to the leader L and back (one
/// round trip R↔L, zero when R is the leader), and the leader waits for a
/// majority: its own vote plus the ⌊n/2⌋ followers that answer first, which
/// costs the ⌊n/2⌋-th shortest round trip from L. Linearizable reads pay the
/// same, because the leader confirms its leadership with a majority before
/// it answers (etcd's ReadIndex). Disk writes and processing are not
/// modelled; the measured cluster (`homeport bench --cluster`) has them.
public struct ConsensusLatencyModel: Sendable, Equatable {
    public let leader: String
    public let members: [String]
    public let latency: LatencyMatrix

    /// - Throws: `ConfigurationError` when `leader` is not one of the topology's regions.
    public init(topology: RegionTopology, leader: String) throws(ConfigurationError) {
        guard topology.regionNames.contains(leader) else {
            throw ConfigurationError(
                field: "leader",
                detail: "\"\(leader)\" is not a region of the topology; use one of \(topology.regionNames.joined(separator: ", "))")
        }
        self.leader = leader
        self.members = topology.regionNames
        self.latency = topology.latency
    }

    /// Returns the leader's wait for a majority: the ⌊n/2⌋-th shortest
    /// nominal round trip from the leader to another member.
    public var quorumRoundTrip: Duration {
        let roundTrips = members.filter { $0 != leader }.map { roundTrip(leader, $0) }.sorted()
        let needed = members.count / 2
        guard needed > 0, needed <= roundTrips.count else { return .zero }
        return roundTrips[needed - 1]
    }

    /// Returns the nominal latency of one operation entering at `region`.
    public func delay(from region: String) -> Duration {
        roundTrip(region, leader) + quorumRoundTrip
    }

    /// Returns one operation's latency from `region` with the matrix's jitter
    /// applied to each crossing.
    public func sampleDelay<Generator: RandomNumberGenerator>(from region: String, using generator: inout Generator) -> Duration {
        let jitter = latency.jitterFraction
        let nominal = delay(from: region)
        guard nominal > .zero, jitter > 0 else { return nominal }
        return nominal * Double.random(in: (1 - jitter)...(1 + jitter), using: &generator)
    }

    private func roundTrip(_ first: String, _ second: String) -> Duration {
        latency.nominalDelay(from: first, to: second) * 2
    }
}
