import Foundation
import Synchronization

/// Counters, gauges and latency histograms, rendered in the Prometheus text
/// exposition format (version 0.0.4).
///
/// Label sets are kept in the order given; callers pass the same label names
/// in the same order for one metric. Every update takes the registry's lock
/// twice, briefly (once to register the series, once to update it).
public final class MetricsRegistry: Sendable {
    /// Upper bounds of the latency buckets, in seconds.
    public static let latencyBuckets: [Double] = [
        0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5, 5, 10,
    ]

    private struct SeriesKey: Hashable {
        let name: String
        let labels: [String]
    }

    private struct Histogram {
        var bucketCounts: [UInt64]
        var count: UInt64 = 0
        var sum: Double = 0
    }

    private enum MetricType: String {
        case counter
        case gauge
        case histogram
    }

    private struct State {
        var help: [String: (type: MetricType, text: String)] = [:]
        var labelNames: [String: [String]] = [:]
        var values: [SeriesKey: Double] = [:]
        var histograms: [SeriesKey: Histogram] = [:]
    }

    /// Every series and its value.
    private let state = Mutex(State())

    public init() {}

    /// Adds `amount` to a counter.
    public func increment(_ name: String, help: String, labels: KeyValuePairs<String, String>, by amount: Double = 1) {
        let key = register(name, .counter, help, labels)
        state.withLock { $0.values[key, default: 0] += amount }
    }

    public func setGauge(_ name: String, help: String, labels: KeyValuePairs<String, String>, to value: Double) {
        let key = register(name, .gauge, help, labels)
        state.withLock { $0.values[key] = value }
    }

    /// Records one observation, in seconds, into a latency histogram.
    public func observe(_ name: String, help: String, labels: KeyValuePairs<String, String>, seconds: Double) {
        let key = register(name, .histogram, help, labels)
        let bucket = Self.latencyBuckets.firstIndex { seconds <= $0 } ?? Self.latencyBuckets.count
        state.withLock { state in
            var histogram = state.histograms[key] ?? Histogram(bucketCounts: Array(repeating: 0, count: Self.latencyBuckets.count + 1))
            histogram.bucketCounts[bucket] += 1
            histogram.count += 1
            histogram.sum += seconds
            state.histograms[key] = histogram
        }
    }

    /// Returns the current value of a counter or gauge series, or 0 if it was never set.
    public func value(_ name: String, labels: KeyValuePairs<String, String>) -> Double {
        let key = SeriesKey(name: name, labels: labels.map(\.value))
        return state.withLock { $0.values[key] ?? 0 }
    }

    private func register(_ name: String, _ type: MetricType, _ help: String, _ labels: KeyValuePairs<String, String>) -> SeriesKey {
        let key = SeriesKey(name: name, labels: labels.map(\.value))
        state.withLock { state in
            if state.help[name] == nil {
                state.help[name] = (type, help)
                state.labelNames[name] = labels.map(\.key)
            }
        }
        return key
    }

    /// Renders the whole registry in the Prometheus text format, series sorted for stable output.
    public func renderPrometheus() -> String {
        let snapshot = state.withLock { $0 }
        var output = ""
        for name in snapshot.help.keys.sorted() {
            let (type, help) = snapshot.help[name]!
            let labelNames = snapshot.labelNames[name] ?? []
            output += "# HELP \(name) \(help)\n# TYPE \(name) \(type.rawValue)\n"

            switch type {
            case .counter, .gauge:
                let series = snapshot.values.filter { $0.key.name == name }.sorted {
                    $0.key.labels.lexicographicallyPrecedes($1.key.labels)
                }
                for (key, value) in series {
                    output += "\(name)\(Self.renderLabels(labelNames, key.labels)) \(Self.renderNumber(value))\n"
                }
            case .histogram:
                let series = snapshot.histograms.filter { $0.key.name == name }.sorted {
                    $0.key.labels.lexicographicallyPrecedes($1.key.labels)
                }
                for (key, histogram) in series {
                    var cumulative: UInt64 = 0
                    for (index, bound) in Self.latencyBuckets.enumerated() {
                        cumulative += histogram.bucketCounts[index]
                        let labels = Self.renderLabels(labelNames + ["le"], key.labels + [Self.renderNumber(bound)])
                        output += "\(name)_bucket\(labels) \(cumulative)\n"
                    }
                    let infinity = Self.renderLabels(labelNames + ["le"], key.labels + ["+Inf"])
                    output += "\(name)_bucket\(infinity) \(histogram.count)\n"
                    output += "\(name)_sum\(Self.renderLabels(labelNames, key.labels)) \(Self.renderNumber(histogram.sum))\n"
                    output += "\(name)_count\(Self.renderLabels(labelNames, key.labels)) \(histogram.count)\n"
                }
            }
        }
        return output
    }

    private static func renderLabels(_ names: [String], _ values: [String]) -> String {
        guard !names.isEmpty else { return "" }
        let pairs = zip(names, values).map { name, value in
            let escaped = value.replacingOccurrences(of: "\\", with: "\\\\")
                .replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n")
            return "\(name)=\"\(escaped)\""
        }
        return "{" + pairs.joined(separator: ",") + "}"
    }

    private static func renderNumber(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}
