extension SessionStoreLimits {
    /// The policy table kinds this store holds, each of which must be
    /// `session-local`.
    public static let sessionKinds = ["conversation_buffer", "tool_call_ledger", "kv_cache_refs", "session_values"]

    /// Limits taken from the policy rows of the four session-local kinds; an
    /// option a row leaves out keeps its default.
    ///
    /// - Throws: `ConfigurationError` when a kind is missing or is not
    ///   `session-local`: this build serves those kinds only from the home
    ///   region's store.
    public init(policy: PolicyTable) throws(ConfigurationError) {
        self.init()
        for kind in Self.sessionKinds {
            guard let row = policy.row(for: kind) else {
                throw ConfigurationError(
                    field: "policy.\(kind)", detail: "the policy table has no row for \(kind); add one (see `homeport policy check`)")
            }
            guard row.consistency == .sessionLocal else {
                // NOTE: moving a session kind behind consensus (the all-linearizable
                // baseline) needs a linearizable store, which this build lacks.
                throw ConfigurationError(
                    field: "policy.\(kind)",
                    detail: "\(kind) is \(row.consistency.rawValue), but this build serves it only as session-local")
            }
        }

        let buffer = policy.row(for: "conversation_buffer")!.limits
        maximumTurns = buffer.maxEntries ?? maximumTurns
        maximumTurnBytes = buffer.maxEntryBytes ?? maximumTurnBytes
        maximumBufferBytes = buffer.maxTotalBytes ?? maximumBufferBytes
        dropOldestTurns = buffer.overflow == .dropOldest

        let ledger = policy.row(for: "tool_call_ledger")!.limits
        maximumLedgerEntries = ledger.maxEntries ?? maximumLedgerEntries
        maximumLedgerEntryBytes = ledger.maxEntryBytes ?? maximumLedgerEntryBytes

        let kvRow = policy.row(for: "kv_cache_refs")!
        maximumKVCacheRefs = kvRow.limits.maxEntries ?? maximumKVCacheRefs
        if let ttl = kvRow.ttlSeconds {
            defaultKVCacheTTLMilliseconds = Int64(ttl) * 1000
        }

        let values = policy.row(for: "session_values")!.limits
        maximumValues = values.maxEntries ?? maximumValues
        maximumValueBytes = values.maxEntryBytes ?? maximumValueBytes
    }
}
