/// The key layout of `ConsensusSessionStore`, under a configurable prefix.
///
/// | key | contents |
/// | --- | --- |
/// | `<prefix>count` | a key put once per created session, so its version counts the sessions (see `createSession`) |
/// | `<prefix>meta/<session>` | the session's meta record: info, counters and the turn index |
/// | `<prefix>data/<session>/t/<seq>/<epoch>` | one turn; both numbers are 20 decimal digits, so that key order is seq order |
/// | `<prefix>data/<session>/i/<idempotency key>` | the stamp and fingerprint of the turn the key first stored |
/// | `<prefix>data/<session>/l/<call id>` | one ledger entry |
/// | `<prefix>data/<session>/k` | every KV-cache ref of the session, in one record |
/// | `<prefix>data/<session>/v/<name>` | one session value |
///
/// A session id has no `/`, so one session's keys never share a prefix with
/// another's. `ConsensusSessionCodec` describes the records.
struct ConsensusSessionKeys: Sendable {
    let prefix: String

    /// The key whose version is the number of sessions created since the store was last emptied.
    var sessionCounter: String { prefix + "count" }

    /// The prefix of every meta record, one per session.
    var metaPrefix: String { prefix + "meta/" }

    func meta(_ id: SessionID) -> String { metaPrefix + id.rawValue }

    /// The prefix of every record of the session but its meta.
    func data(_ id: SessionID) -> String { prefix + "data/" + id.rawValue + "/" }

    func turnPrefix(_ id: SessionID) -> String { data(id) + "t/" }

    func turn(_ id: SessionID, _ stamp: SessionStamp) -> String {
        turnPrefix(id) + Self.padded(stamp.seq) + "/" + Self.padded(stamp.epoch)
    }

    /// The first turn key with a seq of `seq` or more.
    func firstTurn(_ id: SessionID, seq: UInt64) -> String {
        turnPrefix(id) + Self.padded(seq)
    }

    func idempotencyPrefix(_ id: SessionID) -> String { data(id) + "i/" }

    func idempotency(_ id: SessionID, key: String) -> String { idempotencyPrefix(id) + key }

    func ledgerPrefix(_ id: SessionID) -> String { data(id) + "l/" }

    func ledger(_ id: SessionID, callID: String) -> String { ledgerPrefix(id) + callID }

    func kvCacheRefs(_ id: SessionID) -> String { data(id) + "k" }

    func valuePrefix(_ id: SessionID) -> String { data(id) + "v/" }

    func value(_ id: SessionID, name: String) -> String { valuePrefix(id) + name }

    /// Returns the session id of a meta key, or nil for a key of another shape.
    func sessionID(ofMetaKey key: String) -> SessionID? {
        let keyBytes = Array(key.utf8)
        let prefixBytes = Array(metaPrefix.utf8)
        guard keyBytes.starts(with: prefixBytes) else { return nil }
        return SessionID(String(decoding: keyBytes[prefixBytes.count...], as: UTF8.self))
    }

    /// Writes the number in 20 decimal digits, the most a `UInt64` needs, so
    /// that byte order is numeric order.
    static func padded(_ number: UInt64) -> String {
        let digits = String(number)
        return String(repeating: "0", count: 20 - digits.count) + digits
    }
}
