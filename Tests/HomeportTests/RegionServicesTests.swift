import Testing

@testable import Homeport

/// The global-state and billing routes as a region's node serves them, in a
/// running cluster over HTTP.
@Suite struct RegionServicesTests {
    @Test func routerWeightsWrittenAtOneRegionReachTheOthers() async throws {
        let cluster = try await startReplicatingCluster(batchDelayMilliseconds: 5)
        let client = HomeportClient()
        let weights: JSONValue = .object(["model-a": .number(0.7), "model-b": .number(0.3)])

        let written = try await client.send(
            "PUT", baseURL: cluster.baseURL(of: "us-east")!, path: "/v1/registers/router-weights", token: nil,
            body: .object(["value": weights]))
        #expect(written.status == 200)
        #expect(written.servedBy == "us-east")

        // Pushes take one one-way delay (1 ms here); poll briefly.
        for region in ["us-west", "eu-west"] {
            var value: JSONValue?
            for _ in 0..<200 where value == nil {
                let read = try? await client.send(
                    "GET", baseURL: cluster.baseURL(of: region)!, path: "/v1/registers/router-weights", token: nil, body: nil)
                value = read?.body["value"]
                if value == nil { try await Task.sleep(for: .milliseconds(10)) }
            }
            #expect(value == weights, "\(region) never saw the router weights")
        }
        await cluster.shutdown()
    }

    @Test func usageRecordedAtTwoRegionsCountsOnceInTotals() async throws {
        let cluster = try await startReplicatingCluster(batchDelayMilliseconds: 5)
        let client = HomeportClient()

        for (region, requestID) in [("us-east", "r1"), ("us-west", "r2"), ("eu-west", "r1")] {
            do {
                _ = try await client.send(
                    "POST", baseURL: cluster.baseURL(of: region)!, path: "/v1/tenants/acme/usage", token: nil,
                    body: .object(["requestId": .string(requestID), "tokens": .integer(100)]))
            } catch {
                Issue.record("recording \(requestID) at \(region) failed: \(error)")
            }
        }
        for node in cluster.nodes {
            for case let billing as BillingService in node.services {
                _ = try await billing.recorder.totals(of: TenantID("acme")!)
            }
        }

        // r1 was recorded at two regions; each region's flush dedupes it in the store.
        let totals = try await client.send(
            "GET", baseURL: cluster.baseURL(of: "eu-west")!, path: "/v1/tenants/acme/usage/totals", token: nil, body: nil)
        #expect(totals.body["tokens"]?.integerValue == 200)
        #expect(totals.body["records"]?.integerValue == 2)

        let bad = try? await client.send(
            "POST", baseURL: cluster.baseURL(of: "us-east")!, path: "/v1/tenants/acme/usage", token: nil,
            body: .object(["requestId": .string("r3"), "tokens": .string("many")]))
        #expect(bad == nil)
        await cluster.shutdown()
    }
}
