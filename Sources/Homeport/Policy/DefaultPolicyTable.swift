extension PolicyTable {
    /// The table Homeport uses when no policy file is given. It validates with no
    /// errors and no warnings.
    ///
    /// Limits are per session. The sizes are starting points for a deployment to
    /// tune, not measured requirements.
    public static let defaultTable = PolicyTable(rows: [
        PolicyRow(
            kind: "conversation_buffer",
            readers: .singleSession,
            staleReadCost: .invisible,
            consistency: .sessionLocal,
            replication: .neighbour,
            limits: SizeLimits(
                maxEntries: 1024,
                maxEntryBytes: 1_048_576,
                maxTotalBytes: 16_777_216,
                overflow: .reject
            ),
            notes: "turns of one conversation, replicated to the neighbour"
        ),
        PolicyRow(
            kind: "tool_call_ledger",
            readers: .singleSession,
            staleReadCost: .annoying,
            consistency: .sessionLocal,
            replication: .neighbour,
            limits: SizeLimits(maxEntries: 256, maxEntryBytes: 65_536),
            notes: "tool calls a session has made, replicated to the neighbour"
        ),
        PolicyRow(
            kind: "kv_cache_refs",
            readers: .singleSession,
            staleReadCost: .invisible,
            consistency: .sessionLocal,
            replication: .none,
            ttlSeconds: 600,
            limits: SizeLimits(maxEntries: 4096),
            notes: "not replicated because the KV cache can be recomputed"
        ),
        PolicyRow(
            kind: "session_values",
            readers: .singleSession,
            staleReadCost: .annoying,
            consistency: .sessionLocal,
            replication: .neighbour,
            limits: SizeLimits(maxEntries: 64, maxEntryBytes: 16_384),
            notes: "small per-session key-value settings"
        ),
        PolicyRow(
            kind: "model_router_weights",
            readers: .crossSession,
            staleReadCost: .annoying,
            consistency: .eventuallyGlobal,
            replication: .allRegions,
            notes: "a briefly stale weight only skews routing"
        ),
        PolicyRow(
            kind: "rate_limit",
            readers: .crossSession,
            staleReadCost: .annoying,
            consistency: .eventuallyGlobal,
            replication: .allRegions,
            notes: "approximate, may over-admit briefly"
        ),
        PolicyRow(
            kind: "usage_quota",
            readers: .crossSession,
            staleReadCost: .incorrect,
            consistency: .linearizable,
            replication: .none,
            notes: "never overspent"
        ),
        PolicyRow(
            kind: "billing_counter",
            readers: .crossSession,
            staleReadCost: .incorrect,
            consistency: .linearizable,
            replication: .none,
            notes: "exactly once"
        ),
    ])
}
