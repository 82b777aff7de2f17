/// Why the session store rejected an operation. Each code maps to one HTTP status.
public struct SessionStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// 404: no such session in this store.
        case sessionNotFound = "session-not-found"
        /// 409: a session with this id exists already.
        case sessionExists = "session-exists"
        /// 404: no such ledger entry, KV-cache ref or value.
        case entryNotFound = "entry-not-found"
        /// 409: two different terminal ledger states, or a different tool name for a call id.
        case ledgerConflict = "ledger-conflict"
        /// 422: the same idempotency key was sent with a different turn.
        case idempotencyKeyReused = "idempotency-key-reused"
        /// 413: a size limit of the policy table would be exceeded.
        case limitExceeded = "limit-exceeded"
        /// 409: the request's epoch is not the session's epoch.
        case staleEpoch = "stale-epoch"
        /// 400: a write that the store's rules reject (a new ledger call without a name).
        case invalidWrite = "invalid-write"
        /// 503: the session log could not record the write, so it was undone.
        case notDurable = "durable-log-failed"
        /// 409: a reconcile tail starts after the position this store has, so
        /// merging it would leave a hole. The old home requests positions again.
        case reconcilePositionUnknown = "reconcile-position-unknown"
        /// 503: the store's server (Redis) could not be reached, did not reply
        /// within its timeout or failed the command. A write may or may not
        /// have been applied: retry it with the same idempotency key.
        case storeUnavailable = "session-store-unavailable"
    }

    public let code: Code
    public let session: SessionID?
    public let detail: String

    public init(_ code: Code, session: SessionID?, _ detail: String) {
        self.code = code
        self.session = session
        self.detail = detail
    }

    public var description: String { "\(code.rawValue): \(detail)" }
}
