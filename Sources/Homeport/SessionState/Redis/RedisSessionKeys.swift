/// The key layout of `RedisSessionStore`, under a configurable prefix.
///
/// Per session (`<session>` is the session id, whose characters are all safe
/// in a key):
///
/// | key | type | contents |
/// | --- | --- | --- |
/// | `<prefix>:{<session>}:meta` | hash | `tenant`, `home`, `epoch`, `seq` (last seq), `created`, `bytes` (buffer bytes), `gap` (0 or 1), and `adoptedEpoch`, `adoptedSeq` for an adopted session |
/// | `<prefix>:{<session>}:turns` | list | turn records in stamp order |
/// | `<prefix>:{<session>}:keys` | hash | idempotency key → the stamp of its turn and the turn's fingerprint |
/// | `<prefix>:{<session>}:keyorder` | list | idempotency keys, oldest first, for eviction |
/// | `<prefix>:{<session>}:ledger` | hash | call id → ledger entry record |
/// | `<prefix>:{<session>}:kv` | hash | block → KV-cache ref record |
/// | `<prefix>:{<session>}:kvexpiry` | sorted set | block, scored by its expiry time in milliseconds |
/// | `<prefix>:{<session>}:values` | hash | name → session value record |
///
/// and one key for the region: `<prefix>:sessions`, a set of every session id.
/// `RedisSessionCodec` describes the record formats.
///
/// The braces are a Redis Cluster hash tag: a session's keys share one slot.
struct RedisSessionKeys: Sendable {
    let prefix: String

    /// The set of every session id of this store.
    var index: String { "\(prefix):sessions" }

    /// Returns the session's keys in the order the scripts take them as KEYS: meta,
    /// turns, keys, keyorder, ledger, kv, kvexpiry, values, then the index.
    func keys(for id: SessionID) -> [String] {
        let base = "\(prefix):{\(id.rawValue)}:"
        return [
            base + "meta", base + "turns", base + "keys", base + "keyorder", base + "ledger", base + "kv", base + "kvexpiry",
            base + "values", index,
        ]
    }

    /// Returns the session's own keys, without the index.
    func sessionKeys(for id: SessionID) -> [String] {
        Array(keys(for: id).dropLast())
    }

    func meta(for id: SessionID) -> String { "\(prefix):{\(id.rawValue)}:meta" }
}
