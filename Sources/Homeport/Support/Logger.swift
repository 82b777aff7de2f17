import Foundation
import Synchronization

/// Severity of a log record, ordered from the most to the least verbose.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
    case debug
    case info
    case warning
    case error

    public var name: String {
        switch self {
        case .debug: "debug"
        case .info: "info"
        case .warning: "warning"
        case .error: "error"
        }
    }

    public init?(name: String) {
        guard let level = LogLevel.allCases.first(where: { $0.name == name }) else { return nil }
        self = level
    }

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool {
        lhs.rawValue < rhs.rawValue
    }
}

/// The destination of log lines. Writes are serialised so lines never interleave.
public final class LogSink: Sendable {
    /// The file descriptor lines are written to, or nil to drop them; the lock
    /// keeps whole lines together.
    private let descriptor: Mutex<Int32?>
    public let minimumLevel: LogLevel

    public init(descriptor: Int32 = STDERR_FILENO, minimumLevel: LogLevel = .info) {
        self.descriptor = Mutex(descriptor)
        self.minimumLevel = minimumLevel
    }

    private init(droppingBelow minimumLevel: LogLevel) {
        self.descriptor = Mutex(nil)
        self.minimumLevel = minimumLevel
    }

    /// A sink that drops every record, for tests and benchmarks.
    public static let discarding = LogSink(droppingBelow: .error)

    fileprivate func write(_ line: [UInt8]) {
        descriptor.withLock { descriptor in
            guard let descriptor else { return }
            line.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = Foundation.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                    if written <= 0 { return }
                    offset += written
                }
            }
        }
    }
}

/// A structured logger that writes one JSON object per line.
///
/// Messages are constant text; values go in metadata (`region`, `session`,
/// `request`, `epoch`, `error`, …). Never put a routing token or a key in
/// metadata.
public struct Logger: Sendable {
    public let label: String
    public var metadata: [String: String]
    private let sink: LogSink
    private let clock: any WallClock

    public init(label: String, sink: LogSink, clock: any WallClock = SystemClock(), metadata: [String: String] = [:]) {
        self.label = label
        self.sink = sink
        self.clock = clock
        self.metadata = metadata
    }

    /// Returns a copy of this logger that adds `extra` to every record.
    public func with(_ extra: [String: String]) -> Logger {
        var copy = self
        copy.metadata.merge(extra) { _, new in new }
        return copy
    }

    public func debug(_ message: String, _ metadata: [String: String] = [:]) {
        log(.debug, message, metadata)
    }

    public func info(_ message: String, _ metadata: [String: String] = [:]) {
        log(.info, message, metadata)
    }

    public func warning(_ message: String, _ metadata: [String: String] = [:]) {
        log(.warning, message, metadata)
    }

    public func error(_ message: String, _ metadata: [String: String] = [:]) {
        log(.error, message, metadata)
    }

    public func log(_ level: LogLevel, _ message: String, _ extra: [String: String]) {
        guard level >= sink.minimumLevel else { return }

        var fields: [String: JSONValue] = [
            "ts": .string(Self.formatTimestamp(clock.nowMilliseconds())),
            "level": .string(level.name),
            "logger": .string(label),
            "msg": .string(message),
        ]
        for (key, value) in metadata.merging(extra, uniquingKeysWith: { _, new in new }) {
            fields[key] = .string(value)
        }

        var line = JSONValue.object(fields).serializedBytes()
        line.append(UInt8(ascii: "\n"))
        sink.write(line)
    }

    private static func formatTimestamp(_ milliseconds: Int64) -> String {
        let date = Date(timeIntervalSince1970: Double(milliseconds) / 1000)
        return date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}
