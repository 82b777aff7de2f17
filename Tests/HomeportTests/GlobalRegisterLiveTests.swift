import Foundation
import Testing

@testable import Homeport

/// Three regions, each a `GlobalStateNode` behind its own HTTP server on a
/// 127.0.0.1 ephemeral port. They call each other through `InterRegionClient`
/// with the default latency matrix (40 to 68 ms one way, ±10%) and run their
/// real loops on the system clock.
private final class LiveRegions: Sendable {
    let topology = RegionTopology.threeRegionDefault()
    let client: InterRegionClient
    let nodes: [String: GlobalStateNode]
    let servers: [String: HTTPServer]
    let http = HTTPClient(timeout: .seconds(10))

    init(configuration: GlobalStateConfiguration) throws {
        let clock = SystemClock()
        let keyRing = try TokenKeyRing.generated()
        let logger = Logger(label: "global-state-live", sink: .discarding)
        client = InterRegionClient(topology: topology, clock: clock)

        var nodes: [String: GlobalStateNode] = [:]
        var servers: [String: HTTPServer] = [:]
        for region in topology.regionNames {
            let metrics = MetricsRegistry()
            let state = try GlobalRegionState(
                region: region, regions: topology.regionNames, configuration: configuration, clock: clock, metrics: metrics, logger: logger)
            let node = try GlobalStateNode(
                state: state, configuration: configuration, transport: client, keyRing: keyRing, clock: clock, metrics: metrics,
                logger: logger)
            nodes[region] = node
            servers[region] = HTTPServer(configuration: HTTPServerConfiguration(), logger: logger) { request in
                await node.handler.respond(to: request)
                    ?? ProblemDetails(status: 404, type: "route-not-found", title: "Not found", detail: "no such route").response()
            }
        }
        self.nodes = nodes
        self.servers = servers
    }

    func start() throws {
        for (region, server) in servers {
            client.setPort(try server.start(), of: region)
        }
        for node in nodes.values { node.start() }
    }

    func stop() async {
        for node in nodes.values { await node.stop() }
        for server in servers.values { await server.shutdown() }
    }

    func send(_ method: String, _ path: String, body: String? = nil, to region: String) async throws -> HTTPResponse {
        var request = HTTPRequest(method: method, path: path)
        if let body {
            request.headers["content-type"] = "application/json"
            request.body = Array(body.utf8)
        }
        return try await http.send(request, host: "127.0.0.1", port: client.endpoint(of: region)!.port)
    }
}

@Suite(.timeLimit(.minutes(1)))
struct GlobalRegisterLiveTests {
    @Test("registers and rate limits over loopback")
    func liveRegions() async throws {
        let configuration = GlobalStateConfiguration(
            replication: .init(antiEntropyInterval: .milliseconds(200)), rateLimits: .init(countExchangeInterval: .milliseconds(100)))
        let regions = try LiveRegions(configuration: configuration)
        try regions.start()

        let put = try await regions.send("PUT", "/v1/registers/router-weights", body: #"{"value": {"llama-70b": 0.7}}"#, to: "us-east")
        #expect(put.status == 200)
        let stamp = try RegisterStamp(reading: JSONObjectReader(try #require(JSONValue.parse(put.body)["stamp"])))
        for region in ["us-west", "eu-west"] {
            await regions.nodes[region]!.state.registers.waitForEntry("router-weights", atLeast: stamp)
            let read = try await regions.send("GET", "/v1/registers/router-weights", to: region)
            #expect(try JSONValue.parse(read.body)["value"] == .object(["llama-70b": .number(0.7)]), "weights at \(region)")
        }

        let setting = try await regions.send(
            "PUT", "/v1/tenants/acme/rate-limit", body: #"{"requestsPerWindow": 2, "windowSeconds": 3600}"#, to: "eu-west")
        let settingStamp = try RegisterStamp(reading: JSONObjectReader(try #require(JSONValue.parse(setting.body)["stamp"])))
        await regions.nodes["us-east"]!.state.registers.waitForEntry("rate-limit:acme", atLeast: settingStamp)
        var statuses: [Int] = []
        for _ in 0..<3 {
            statuses.append(try await regions.send("POST", "/v1/tenants/acme/rate-limit/check", to: "us-east").status)
        }
        #expect(statuses == [200, 200, 429])

        await regions.stop()
    }

    /// Push convergence on real time: 30 writes at us-east, each awaited at
    /// the other two regions. Prints the medians; asserts no timing.
    @Test("push convergence medians over loopback")
    func convergenceMedians() async throws {
        let regions = try LiveRegions(configuration: GlobalStateConfiguration())
        try regions.start()

        for index in 0..<30 {
            let response = try await regions.send(
                "PUT", "/v1/registers/router-weights", body: #"{"value": {"llama-70b": \#(index)}}"#, to: "us-east")
            let stamp = try RegisterStamp(reading: JSONObjectReader(try #require(JSONValue.parse(response.body)["stamp"])))
            for region in ["us-west", "eu-west"] {
                await regions.nodes[region]!.state.registers.waitForEntry("router-weights", atLeast: stamp)
            }
        }
        await regions.stop()

        for region in ["us-west", "eu-west"] {
            let samples = regions.nodes[region]!.state.registers.statistics().convergence.map(\.milliseconds).sorted()
            #expect(samples.count == 30, "samples at \(region)")
            let nominal = regions.topology.latency.nominalDelay(from: "us-east", to: region).wholeMilliseconds
            print(
                "push convergence us-east → \(region): median \(samples[samples.count / 2]) ms, max \(samples.last ?? 0) ms (one-way delay \(nominal) ms ±10%)"
            )
        }
    }
}
