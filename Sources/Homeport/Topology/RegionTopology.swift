import Foundation

/// One region's address: where its node listens for the API and for other regions.
public struct RegionEndpoint: Sendable, Equatable {
    public var name: String
    public var host: String
    /// 0 binds an ephemeral port (in-process runs and tests).
    public var port: UInt16

    public init(name: String, host: String = "127.0.0.1", port: UInt16 = 0) {
        self.name = name
        self.host = host
        self.port = port
    }

    public var baseURL: String { "http://\(host):\(port)" }
}

/// The regions of a deployment, their ring order, and the latency between them.
///
/// A region's neighbour is the next region in the ring (the list order,
/// wrapping around) unless `neighbours` names another.
public struct RegionTopology: Sendable, Equatable {
    public var regions: [RegionEndpoint]
    public var neighbours: [String: String]
    public var latency: LatencyMatrix

    public init(regions: [RegionEndpoint], neighbours: [String: String] = [:], latency: LatencyMatrix) throws(ConfigurationError) {
        self.regions = regions
        self.neighbours = neighbours
        self.latency = latency
        try validate()
    }

    /// Returns the default topology: three regions with one-way delays of about half the
    /// published average round trips between such cloud regions, ±10% jitter.
    public static func threeRegionDefault() -> RegionTopology {
        try! RegionTopology(
            regions: [RegionEndpoint(name: "us-east"), RegionEndpoint(name: "us-west"), RegionEndpoint(name: "eu-west")],
            latency: LatencyMatrix(
                oneWay: [
                    RegionPair("us-east", "us-west"): .milliseconds(44),
                    RegionPair("us-east", "eu-west"): .milliseconds(40),
                    RegionPair("us-west", "eu-west"): .milliseconds(68),
                ],
                jitterFraction: 0.1))
    }

    public var regionNames: [String] { regions.map(\.name) }

    public func endpoint(_ name: String) -> RegionEndpoint? {
        regions.first { $0.name == name }
    }

    public func neighbour(of region: String) -> String? {
        if let configured = neighbours[region] { return configured }
        guard let index = regions.firstIndex(where: { $0.name == region }), regions.count > 1 else { return nil }
        return regions[(index + 1) % regions.count].name
    }

    public func validate() throws(ConfigurationError) {
        guard !regions.isEmpty else {
            throw ConfigurationError(field: "regions", detail: "at least one region is required")
        }
        var seen = Set<String>()
        for region in regions {
            guard Self.isValidName(region.name) else {
                throw ConfigurationError(
                    field: "regions.\(region.name)",
                    detail: "a region name must be 1 to 32 characters of a-z, 0-9 and '-', starting with a letter")
            }
            guard seen.insert(region.name).inserted else {
                throw ConfigurationError(field: "regions.\(region.name)", detail: "region \"\(region.name)\" is listed twice")
            }
        }
        for (region, neighbour) in neighbours {
            guard seen.contains(region), seen.contains(neighbour), region != neighbour else {
                throw ConfigurationError(
                    field: "neighbours.\(region)",
                    detail: "the neighbour of \"\(region)\" must be another configured region, got \"\(neighbour)\"")
            }
        }
        for first in regions {
            for second in regions where first.name < second.name {
                guard latency.oneWay[RegionPair(first.name, second.name)] != nil else {
                    throw ConfigurationError(
                        field: "latency.oneWayMilliseconds",
                        detail:
                            "no delay is given between \"\(first.name)\" and \"\(second.name)\"; add {\"between\": [\"\(first.name)\", \"\(second.name)\"], \"milliseconds\": N}"
                    )
                }
            }
        }
        for pair in latency.oneWay.keys {
            guard seen.contains(pair.first), seen.contains(pair.second) else {
                throw ConfigurationError(
                    field: "latency.oneWayMilliseconds",
                    detail: "the delay between \"\(pair.first)\" and \"\(pair.second)\" names a region that is not configured")
            }
        }
    }

    static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...32).contains(bytes.count), (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(bytes[0]) else { return false }
        return bytes.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || byte == UInt8(ascii: "-")
        }
    }
}

/// An unordered pair of region names.
public struct RegionPair: Hashable, Sendable {
    public let first: String
    public let second: String

    public init(_ a: String, _ b: String) {
        (first, second) = a < b ? (a, b) : (b, a)
    }
}

/// One-way delays between regions, applied to every inter-region call
/// because all regions run on one machine.
public struct LatencyMatrix: Sendable, Equatable {
    public var oneWay: [RegionPair: Duration]
    /// Each crossing's delay is drawn uniformly from delay × (1 ± jitterFraction).
    public var jitterFraction: Double

    public init(oneWay: [RegionPair: Duration], jitterFraction: Double) {
        self.oneWay = oneWay
        self.jitterFraction = jitterFraction
    }

    /// No delay at all, for tests that measure nothing.
    public static let zero = LatencyMatrix(oneWay: [:], jitterFraction: 0)

    public func nominalDelay(from source: String, to destination: String) -> Duration {
        guard source != destination else { return .zero }
        return oneWay[RegionPair(source, destination)] ?? .zero
    }

    /// Draws one crossing's delay, jitter included.
    public func sampleDelay<Generator: RandomNumberGenerator>(
        from source: String, to destination: String, using generator: inout Generator
    ) -> Duration {
        let nominal = nominalDelay(from: source, to: destination)
        guard nominal > .zero, jitterFraction > 0 else { return nominal }
        let factor = Double.random(in: (1 - jitterFraction)...(1 + jitterFraction), using: &generator)
        return nominal * factor
    }

    /// Returns the maximum round trip by the matrix: both crossings at full jitter.
    public func maximumRoundTrip(between source: String, and destination: String) -> Duration {
        nominalDelay(from: source, to: destination) * (2 * (1 + jitterFraction))
    }

    /// Returns the matrix with every delay multiplied by `factor` (0 removes them).
    public func scaled(by factor: Double) -> LatencyMatrix {
        LatencyMatrix(oneWay: oneWay.mapValues { $0 * factor }, jitterFraction: jitterFraction)
    }
}
