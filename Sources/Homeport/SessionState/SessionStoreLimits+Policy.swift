extension SessionStoreLimits {
    /// The policy table kinds a session store holds, all `session-local` or
    /// all `linearizable` (see `SessionPlacement`).
    public static let sessionKinds = ["conversation_buffer", "tool_call_ledger", "kv_cache_refs", "session_values"]

    /// Limits taken from the policy rows of the four session-local kinds; an
    /// option a row leaves out keeps its default.
    ///
    /// - Throws: `ConfigurationError` when a kind is missing, or when the
    ///   kinds do not share one placement that this build serves.
    public init(policy: PolicyTable) throws(ConfigurationError) {
        self.init()
        for kind in Self.sessionKinds {
            guard policy.row(for: kind) != nil else {
                throw ConfigurationError(
                    field: "policy.\(kind)", detail: "the policy table has no row for \(kind); add one (see `homeport policy check`)")
            }
        }
        _ = try SessionPlacement(policy: policy)

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
