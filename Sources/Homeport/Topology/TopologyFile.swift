import Foundation

/// Reads and writes the topology file: regions, optional neighbours, and the
/// latency matrix.
///
/// ```json
/// {
///   "regions": [{"name": "us-east", "host": "127.0.0.1", "port": 7101}, ...],
///   "neighbours": {"us-east": "us-west"},
///   "latency": {
///     "jitterFraction": 0.1,
///     "oneWayMilliseconds": [{"between": ["us-east", "us-west"], "milliseconds": 44}, ...]
///   }
/// }
/// ```
public enum TopologyFile {
    public static func load(path: String) throws(ConfigurationError) -> RegionTopology {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(field: "topology file", detail: "cannot read \(path)")
        }
        do {
            return try parse(Array(data))
        } catch {
            throw ConfigurationError(field: error.field, detail: "\(path): \(error.detail)")
        }
    }

    public static func parse(_ bytes: [UInt8]) throws(ConfigurationError) -> RegionTopology {
        let root: JSONValue
        do {
            root = try JSONValue.parse(bytes)
        } catch {
            throw ConfigurationError(field: "topology file", detail: "not valid JSON: \(error)")
        }

        do {
            var reader = try JSONObjectReader(root)
            let regionValues = try reader.array("regions", maximumCount: 64)
            var regions: [RegionEndpoint] = []
            for (index, value) in regionValues.enumerated() {
                var region = try JSONObjectReader(value, path: "regions[\(index)]")
                let name = try region.string("name", maximumBytes: 64)
                let host = try region.optionalString("host", maximumBytes: 64) ?? "127.0.0.1"
                let port = try region.optionalInteger("port", in: 0...65535) ?? 0
                try region.finish()
                regions.append(RegionEndpoint(name: name, host: host, port: UInt16(port)))
            }

            var neighbours: [String: String] = [:]
            if let neighbourValue = reader.optionalValue("neighbours") {
                guard case .object(let entries) = neighbourValue else {
                    throw RequestError(
                        .wrongType, field: "neighbours", detail: "field \"neighbours\" must be an object of region to region")
                }
                for (region, neighbour) in entries {
                    guard let text = neighbour.stringValue else {
                        throw RequestError(
                            .wrongType, field: "neighbours.\(region)", detail: "field \"neighbours.\(region)\" must be a region name")
                    }
                    neighbours[region] = text
                }
            }

            var latencyReader = try JSONObjectReader(try reader.value("latency"), path: "latency")
            let jitterValue = latencyReader.optionalValue("jitterFraction")
            let jitter: Double
            switch jitterValue {
            case nil: jitter = 0.1
            case .integer(let value)?: jitter = Double(value)
            case .number(let value)?: jitter = value
            case let other?:
                throw RequestError(
                    .wrongType, field: "latency.jitterFraction",
                    detail: "field \"latency.jitterFraction\" must be a number, got \(other.typeName)")
            }
            guard (0...0.9).contains(jitter) else {
                throw RequestError(
                    .invalidValue, field: "latency.jitterFraction",
                    detail: "field \"latency.jitterFraction\" must be from 0 to 0.9, got \(jitter)")
            }
            var oneWay: [RegionPair: Duration] = [:]
            for (index, value) in try latencyReader.array("oneWayMilliseconds", maximumCount: 4096).enumerated() {
                let path = "latency.oneWayMilliseconds[\(index)]"
                var entry = try JSONObjectReader(value, path: path)
                let between = try entry.array("between", maximumCount: 2).compactMap(\.stringValue)
                guard between.count == 2, between[0] != between[1] else {
                    throw RequestError(
                        .invalidValue, field: path + ".between", detail: "field \"\(path).between\" must name two different regions")
                }
                let milliseconds = try entry.integer("milliseconds", in: 0...60_000)
                try entry.finish()
                oneWay[RegionPair(between[0], between[1])] = .milliseconds(milliseconds)
            }
            try latencyReader.finish()
            try reader.finish()
            return try RegionTopology(
                regions: regions, neighbours: neighbours, latency: LatencyMatrix(oneWay: oneWay, jitterFraction: jitter))
        } catch let error as RequestError {
            throw ConfigurationError(field: error.field ?? "topology file", detail: error.detail)
        } catch let error as ConfigurationError {
            throw error
        } catch {
            throw ConfigurationError(field: "topology file", detail: "\(error)")
        }
    }

    /// Renders the topology in the file format.
    public static func serialize(_ topology: RegionTopology) -> JSONValue {
        let regions: [JSONValue] = topology.regions.map { region in
            .object(["name": .string(region.name), "host": .string(region.host), "port": .integer(Int64(region.port))])
        }
        let delays: [JSONValue] = topology.latency.oneWay.sorted { ($0.key.first, $0.key.second) < ($1.key.first, $1.key.second) }
            .map { pair, delay in
                .object([
                    "between": .array([.string(pair.first), .string(pair.second)]),
                    "milliseconds": .integer(delay.wholeMilliseconds),
                ])
            }
        var root: [String: JSONValue] = [
            "regions": .array(regions),
            "latency": .object(["jitterFraction": .number(topology.latency.jitterFraction), "oneWayMilliseconds": .array(delays)]),
        ]
        if !topology.neighbours.isEmpty {
            root["neighbours"] = .object(topology.neighbours.mapValues { .string($0) })
        }
        return .object(root)
    }
}
