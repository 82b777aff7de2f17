import Foundation
import Testing
@testable import Homeport

@Suite struct JSONValueTests {
    @Test func parsesEveryType() throws {
        let value = try JSONValue.parse(#"{"a": [1, -2.5, true, false, null, "x\n\u00e9\ud83d\ude00"], "b": {}}"#)
        #expect(
            value
                == .object([
                    "a": .array([.integer(1), .number(-2.5), .bool(true), .bool(false), .null, .string("x\né😀")]),
                    "b": .object([:]),
                ]))
    }

    @Test func serializationRoundTrips() throws {
        let value: JSONValue = .object([
            "z": .string("quote \" backslash \\ tab \t ctl \u{01}"), "a": .array([.integer(Int64.min), .number(0.25)]),
        ])
        #expect(try JSONValue.parse(value.serializedBytes()) == value)
        #expect(value.serializedString().hasPrefix(#"{"a":"#))
    }

    @Test func largeIntegersStayExactOrBecomeNumbers() throws {
        #expect(try JSONValue.parse("9223372036854775807") == .integer(Int64.max))
        #expect(try JSONValue.parse("99999999999999999999") == .number(1e20))
        #expect(try JSONValue.parse("1e30") == .number(1e30))
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "01", "1.", "-", "tru", "\"unterminated",
        "\"bad \\x escape\"", "\"\\ud800\"", "{\"a\":1,\"a\":2}", "[1] 2", "// comment\n{}", "\"ctl \u{01}\"",
    ])
    func rejectsInvalidDocuments(text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(text) }
    }

    @Test func rejectsDeepNesting() {
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        let error = #expect(throws: JSONParseError.self) { try JSONValue.parse(deep) }
        #expect(error?.reason.contains("nesting") == true)
    }

    @Test func rejectsInvalidUTF8() {
        #expect(throws: JSONParseError.self) { try JSONValue.parse([0x22, 0xFF, 0x22]) }
    }
}

@Suite struct TopologyFileTests {
    @Test func defaultTopologyHasTheDesignMatrix() {
        let topology = RegionTopology.threeRegionDefault()
        #expect(topology.regionNames == ["us-east", "us-west", "eu-west"])
        #expect(topology.latency.nominalDelay(from: "us-west", to: "eu-west") == .milliseconds(68))
        #expect(topology.latency.maximumRoundTrip(between: "us-west", and: "eu-west") == .microseconds(149_600))
        #expect(topology.neighbour(of: "eu-west") == "us-east")
    }

    @Test func fileRoundTrips() throws {
        let topology = RegionTopology.threeRegionDefault()
        let parsed = try TopologyFile.parse(TopologyFile.serialize(topology).serializedBytes())
        #expect(parsed == topology)
    }

    @Test func jitterStaysInBounds() {
        let matrix = RegionTopology.threeRegionDefault().latency
        var generator = SplitMix64(seed: 7)
        for _ in 0..<1000 {
            let delay = matrix.sampleDelay(from: "us-east", to: "us-west", using: &generator)
            #expect(delay >= .microseconds(39_600))
            #expect(delay <= .microseconds(48_400))
        }
    }

    @Test func missingPairNamesBothRegions() {
        let text = #"{"regions": [{"name": "a"}, {"name": "b"}], "latency": {"oneWayMilliseconds": []}}"#
        let error = #expect(throws: ConfigurationError.self) { try TopologyFile.parse(Array(text.utf8)) }
        #expect(error?.detail.contains("\"a\" and \"b\"") == true)
    }

    @Test func unknownFieldIsRejected() {
        let text = #"{"regions": [{"name": "a", "zone": 1}], "latency": {"oneWayMilliseconds": []}}"#
        let error = #expect(throws: ConfigurationError.self) { try TopologyFile.parse(Array(text.utf8)) }
        #expect(error?.field == "regions[0].zone")
    }

    @Test func duplicateRegionIsRejected() {
        let text = #"{"regions": [{"name": "a"}, {"name": "a"}], "latency": {"oneWayMilliseconds": []}}"#
        let error = #expect(throws: ConfigurationError.self) { try TopologyFile.parse(Array(text.utf8)) }
        #expect(error?.detail.contains("listed twice") == true)
    }

    @Test func shippedTopologyFileLoads() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let topology = try TopologyFile.load(path: root.appendingPathComponent("config/topology.json").path)
        #expect(topology.regionNames == ["us-east", "us-west", "eu-west"])
        #expect(topology.latency == RegionTopology.threeRegionDefault().latency)
    }
}
