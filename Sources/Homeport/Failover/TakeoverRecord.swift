/// A record in the linearizable store saying that `to` serves the sessions
/// that the failed region `from` homed when it was taken over.
///
/// The record is written by compare-and-swap in one transaction with a check
/// that `from`'s lease is gone, so exactly one region wins a takeover and
/// never while `from` holds its lease. It stays after `from` returns: tokens
/// issued before the takeover still name `from`, and it sends them on to
/// `to`. Once `from` has shipped its tail it sets `reconciledAtMilliseconds`,
/// and only then may a later failure of `from` be taken over again.
public struct TakeoverRecord: Sendable, Equatable {
    public var from: String
    public var to: String
    /// Wall-clock milliseconds since the Unix epoch.
    public var takenAtMilliseconds: Int64
    /// When the returning region finished reconcile-forward; nil before.
    public var reconciledAtMilliseconds: Int64?

    public static func key(of region: String) -> String { "/homeport/takeovers/\(region)" }

    public var bytes: [UInt8] {
        var fields: [String: JSONValue] = ["from": .string(from), "to": .string(to), "takenAt": .integer(takenAtMilliseconds)]
        if let reconciledAtMilliseconds { fields["reconciledAt"] = .integer(reconciledAtMilliseconds) }
        return JSONValue.object(fields).serializedBytes()
    }

    public init(from: String, to: String, takenAtMilliseconds: Int64, reconciledAtMilliseconds: Int64? = nil) {
        self.from = from
        self.to = to
        self.takenAtMilliseconds = takenAtMilliseconds
        self.reconciledAtMilliseconds = reconciledAtMilliseconds
    }

    /// Decodes a stored record; nil when the bytes are not one.
    public init?(bytes: [UInt8]) {
        guard let value = try? JSONValue.parse(bytes), let from = value["from"]?.stringValue, let to = value["to"]?.stringValue,
            let takenAt = value["takenAt"]?.integerValue
        else { return nil }
        self.init(from: from, to: to, takenAtMilliseconds: takenAt, reconciledAtMilliseconds: value["reconciledAt"]?.integerValue)
    }

    /// True when the token's session belongs to the takeover: its home is
    /// `from` and its token was issued no later than the takeover. A session
    /// that `from` created after it returned is its own again.
    ///
    /// Tokens carry whole seconds, so a returning region waits until the
    /// second after `takenAtMilliseconds` before it creates sessions.
    public func covers(_ token: RoutingToken) -> Bool {
        token.home == from && token.issuedAt * 1000 <= takenAtMilliseconds
    }
}
