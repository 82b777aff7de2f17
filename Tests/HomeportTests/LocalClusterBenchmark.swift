import Foundation
import Testing

@testable import Homeport

/// etcd put latency in a local cluster, entering at each region's member
/// with each region's member as leader, next to `ConsensusLatencyModel`
/// (the round trip to the leader plus the leader's quorum round trip). It
/// checks that the peer proxies reproduce the matrix's round trips. Prints
/// medians and asserts nothing, so it is skipped unless
/// `HOMEPORT_CLUSTER_BENCHMARK` is set:
///
///     HOMEPORT_CLUSTER_BENCHMARK=1 swift test --filter LocalClusterBenchmark
@Suite(.enabled(if: ProcessInfo.processInfo.environment["HOMEPORT_CLUSTER_BENCHMARK"] != nil), .serialized)
struct LocalClusterBenchmark {
    static let putsPerMember = 40

    @Test func putLatencyMatchesModel() async throws {
        let configuration = try LocalClusterTests.configuration(directory: LocalClusterTests.temporaryDirectory())
        let cluster = try await LocalClusterTests.start(configuration)
        try await LocalClusterTests.stopping(cluster) {
            let http = HTTPClient(timeout: .seconds(5), maximumConcurrentExchanges: 1, maximumIdlePerEndpoint: 1)
            let body = JSONValue.object(["key": .string("YmVuY2g="), "value": .string("dg==")]).serializedBytes()
            let request = HTTPRequest(method: "POST", path: "/v3/kv/put", headers: ["content-type": "application/json"], body: body)

            print("leader   entering  median ms  model ms  difference ms")
            for leader in cluster.regions {
                try await cluster.placeLeader(leader)
                let model = try ConsensusLatencyModel(topology: cluster.topology, leader: leader)
                for region in cluster.regions {
                    let endpoint = try #require(cluster.etcdClientEndpoints[region])
                    var samples: [Double] = []
                    for _ in 0..<Self.putsPerMember {
                        let started = ContinuousClock.now
                        let response = try await http.send(request, host: endpoint.host, port: endpoint.port)
                        samples.append((ContinuousClock.now - started).secondsValue * 1000)
                        #expect(response.status == 200)
                    }
                    samples.sort()
                    let median = samples[samples.count / 2]
                    let modelled = Double(model.delay(from: region).wholeMilliseconds)
                    print(
                        "\(leader.padding(toLength: 9, withPad: " ", startingAt: 0))\(region.padding(toLength: 10, withPad: " ", startingAt: 0))"
                            + String(format: "%9.1f %9.0f %14.1f", median, modelled, median - modelled))
                }
            }
        }
    }
}
