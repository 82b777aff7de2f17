/// A small linearizable key-value store with revisions, transactions and
/// leases, modelled on etcd's v3 API. It holds region leases, takeover
/// records, quotas and billing counters.
///
/// Contract for every implementation:
/// - Every operation is linearizable: it takes effect at one instant between
///   its call and its return, and a read sees every write that returned
///   before the read began.
/// - The store has one `revision`. An empty store is at revision 1, as in
///   etcd. Every write transaction that changes at least one key (a `put`, a
///   `delete` that removes a key, a `transaction` whose branch writes, or a
///   lease that expires or is revoked with keys attached) raises it by
///   exactly one, and every key it changes gets that revision as its
///   `modRevision`. An operation that changes nothing leaves it unchanged.
/// - Keys are non-empty strings compared and ordered by their UTF-8 bytes,
///   as etcd orders its byte keys. Two strings that Swift considers equal but
///   encode differently (NFC and NFD forms) are two keys.
/// - Sizes: a key is at most `LinearizableStoreLimits.maximumKeyBytes`
///   (1,536 bytes of UTF-8) and a value at most
///   `LinearizableStoreLimits.maximumValueBytes` (1.5 MiB). A larger one
///   fails with `keyTooLarge` or `valueTooLarge` and nothing is written.
/// - When a lease expires or is revoked, every key attached to it is deleted
///   in one revision. A key is attached to the lease of its latest `put`.
/// - The store keeps only current values: no history, watch or compaction.
/// - Every method throws only `LinearizableStoreError`. After `unavailable`
///   or `unexpectedResponse` from a write, the write may or may not have been
///   applied (a network implementation cannot tell a lost request from a lost
///   response), so re-read before retrying, or retry only compare-and-swaps.
public protocol LinearizableStore: Sendable {
    /// Returns the store's current revision.
    func currentRevision() async throws(LinearizableStoreError) -> Int64

    /// Returns the key's value and revisions, or nil when the key is absent.
    func get(_ key: String) async throws(LinearizableStoreError) -> KeyValue?

    /// Returns every key that starts with `prefix`, ordered by key bytes. An
    /// empty prefix returns every key.
    func range(prefix: String) async throws(LinearizableStoreError) -> [KeyValue]

    /// Writes `value` under `key`, attached to `lease` (nil detaches the key
    /// from any lease), and returns the revision of the write.
    ///
    /// Throws `leaseNotFound` when the lease does not exist or has expired.
    func put(_ key: String, value: [UInt8], lease: LeaseID?) async throws(LinearizableStoreError) -> Int64

    /// Deletes the key. Deleting an absent key changes nothing and keeps the
    /// revision.
    func delete(_ key: String) async throws(LinearizableStoreError) -> DeleteResult

    /// Evaluates every compare, then applies `success` when all of them hold
    /// and `failure` otherwise, atomically and in one revision. Operations run
    /// in order, and a `get` or `range` sees the writes before it in the same
    /// branch.
    ///
    /// Throws `invalidArgument` when one branch writes the same key twice, as
    /// etcd rejects it. Throws `leaseNotFound` when a put of the branch that
    /// runs names a missing lease. Size limits apply to every key and value
    /// in the request. On any error nothing is applied.
    func transaction(
        compares: [TransactionCompare], success: [TransactionOperation], failure: [TransactionOperation]
    ) async throws(LinearizableStoreError) -> TransactionResult

    /// Grants a lease that expires `ttl` after the grant unless kept alive.
    ///
    /// The returned `Lease.ttl` is the TTL granted, which may be longer than
    /// requested: etcd grants whole seconds and raises a TTL below its
    /// minimum. Callers must schedule keep-alives from the granted TTL.
    /// Throws `invalidArgument` when `ttl` is not positive or exceeds
    /// `LinearizableStoreLimits.maximumLeaseTTL`.
    func grantLease(ttl: Duration) async throws(LinearizableStoreError) -> Lease

    /// Restarts the lease's TTL from now and returns the remaining TTL, which
    /// is the granted TTL.
    ///
    /// Throws `leaseNotFound` once the lease has expired or was revoked: its
    /// keys are gone by then, and the caller must grant a new lease.
    func keepAlive(_ id: LeaseID) async throws(LinearizableStoreError) -> Duration

    /// Revokes the lease and deletes every key attached to it in one revision.
    ///
    /// Throws `leaseNotFound` when the lease has expired or was revoked.
    func revokeLease(_ id: LeaseID) async throws(LinearizableStoreError)

    /// Returns the lease's granted and remaining TTL and its attached keys.
    ///
    /// Throws `leaseNotFound` when the lease has expired or was revoked.
    func leaseTimeToLive(_ id: LeaseID) async throws(LinearizableStoreError) -> LeaseStatus
}

extension LinearizableStore {
    /// Writes `value` under `key` with no lease and returns the revision of the write.
    public func put(_ key: String, value: [UInt8]) async throws(LinearizableStoreError) -> Int64 {
        try await put(key, value: value, lease: nil)
    }

    /// Writes `newValue` under `key` only if the key's `modRevision` is
    /// `expectedModRevision`, as one transaction.
    ///
    /// `expectedModRevision` 0 means the key must be absent, so exactly one of
    /// several concurrent creators succeeds. On failure nothing is written and
    /// the result carries the key's current value, so the caller can retry
    /// from it without another read. Throws `invalidArgument` when
    /// `expectedModRevision` is negative.
    public func compareAndSwap(
        key: String, expectedModRevision: Int64, newValue: [UInt8], lease: LeaseID? = nil
    ) async throws(LinearizableStoreError) -> CompareAndSwapResult {
        guard expectedModRevision >= 0 else {
            throw LinearizableStoreError(
                .invalidArgument,
                "invalid expected modRevision \(expectedModRevision) for key \(quotedKey(key)): it must not be negative, and 0 means absent"
            )
        }

        // An absent key has modRevision 0, so one compare covers both cases.
        // The get after the put returns the key as written.
        let result = try await transaction(
            compares: [.modRevision(key, equals: expectedModRevision)],
            success: [.put(key, value: newValue, lease: lease), .get(key)],
            failure: [.get(key)]
        )

        var current: KeyValue?
        if case .get(let keyValue)? = result.results.last {
            current = keyValue
        }
        return CompareAndSwapResult(succeeded: result.succeeded, revision: result.revision, current: current)
    }
}

/// A key with its value and revisions.
public struct KeyValue: Sendable, Equatable {
    public var key: String
    public var value: [UInt8]
    /// The revision of the put that created the key since it was last absent.
    public var createRevision: Int64
    /// The revision of the latest put to the key.
    public var modRevision: Int64
    /// The number of puts since the key was created: 1 after the creating put.
    /// A delete ends the count, and a later put starts again at 1.
    public var version: Int64
    /// The lease the key is attached to. The key is deleted when the lease
    /// expires or is revoked.
    public var lease: LeaseID?

    public init(key: String, value: [UInt8], createRevision: Int64, modRevision: Int64, version: Int64, lease: LeaseID?) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.lease = lease
    }
}

/// A lease id, chosen by the store. etcd picks a random non-zero 64-bit id
/// and uses 0 for "no lease", so 0 never names a lease.
public struct LeaseID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: Int64

    public init(rawValue: Int64) {
        self.rawValue = rawValue
    }

    public static func < (lhs: LeaseID, rhs: LeaseID) -> Bool {
        lhs.rawValue < rhs.rawValue
    }

    public var description: String { String(rawValue) }
}

/// A granted lease.
public struct Lease: Sendable, Equatable {
    public var id: LeaseID
    /// The TTL the store granted, which may be longer than requested.
    public var ttl: Duration

    public init(id: LeaseID, ttl: Duration) {
        self.id = id
        self.ttl = ttl
    }
}

/// A live lease's TTLs and attached keys, as `leaseTimeToLive` returns them.
public struct LeaseStatus: Sendable, Equatable {
    public var id: LeaseID
    public var grantedTTL: Duration
    /// The time until the lease expires unless kept alive. Never negative,
    /// because an expired lease is not found. The embedded store counts
    /// milliseconds, so there it is always positive. etcd counts whole seconds
    /// rounded down, so it reports zero during a lease's last second.
    public var remainingTTL: Duration
    /// The attached keys, ordered by key bytes.
    public var keys: [String]

    public init(id: LeaseID, grantedTTL: Duration, remainingTTL: Duration, keys: [String]) {
        self.id = id
        self.grantedTTL = grantedTTL
        self.remainingTTL = remainingTTL
        self.keys = keys
    }
}

/// The outcome of a delete.
public struct DeleteResult: Sendable, Equatable {
    /// The key as it was before the delete, or nil when it was absent and
    /// nothing was deleted.
    public var previous: KeyValue?
    /// The store's revision after the delete: the delete's own revision when
    /// it removed the key, otherwise the unchanged current revision.
    public var revision: Int64

    public init(previous: KeyValue?, revision: Int64) {
        self.previous = previous
        self.revision = revision
    }
}

/// A condition on one key, evaluated at the start of a transaction.
///
/// An absent key has `modRevision` 0 and `version` 0, so `modRevision(key,
/// equals: 0)` and `version(key, equals: 0)` hold exactly when the key is
/// absent. `value(key, equals:)` never holds for an absent key, not even
/// against an empty value, as in etcd.
public enum TransactionCompare: Sendable, Equatable {
    case exists(String)
    case absent(String)
    case modRevision(String, equals: Int64)
    case value(String, equals: [UInt8])
    case version(String, equals: Int64)
    /// Holds when the key's version is below the bound, so an absent key
    /// (version 0) holds for any positive bound. Because every put raises a
    /// key's version by one, a key that each writer puts once works as a
    /// counter that a transaction can cap without reading it first.
    case versionLess(String, than: Int64)

    /// The key the condition reads.
    public var key: String {
        switch self {
        case .exists(let key), .absent(let key), .modRevision(let key, _), .value(let key, _), .version(let key, _),
            .versionLess(let key, _):
            return key
        }
    }
}

/// The keys one `TransactionOperation.range` reads: those that start with
/// `prefix` and are not before `start`, in byte order or its reverse, at most
/// `limit` of them.
///
/// With `descending` and a limit, the range returns the last `limit` keys of
/// the interval, last key first, as etcd's sorted range does. etcd 3.4 reads
/// and sorts the whole interval before it applies the limit of a descending
/// range, so prefer an ascending range from a known start key.
public struct KeyRange: Sendable, Equatable {
    /// Every key read starts with it. An empty prefix covers every key.
    public var prefix: String
    /// The first key of the interval, which must start with `prefix`. Nil
    /// starts at the prefix itself.
    public var start: String?
    /// The maximum number of keys to return, at least 1, or nil for every key of the interval.
    public var limit: Int?
    /// True returns the keys in reverse byte order.
    public var descending: Bool

    public init(prefix: String, start: String? = nil, limit: Int? = nil, descending: Bool = false) {
        self.prefix = prefix
        self.start = start
        self.limit = limit
        self.descending = descending
    }
}

/// One step of a transaction branch.
public enum TransactionOperation: Sendable, Equatable {
    /// Writes the value, attached to the lease (nil detaches the key from any lease).
    case put(String, value: [UInt8], lease: LeaseID? = nil)
    case delete(String)
    case get(String)
    /// Reads several keys at the transaction's revision, as a range request
    /// inside an etcd transaction does.
    case range(KeyRange)

    /// The key the operation reads or writes; for a range, its prefix.
    public var key: String {
        switch self {
        case .put(let key, _, _), .delete(let key), .get(let key):
            return key
        case .range(let range):
            return range.prefix
        }
    }
}

/// The result of one transaction operation, in the order of the branch.
public enum TransactionOperationResult: Sendable, Equatable {
    /// The revision of the put, which is the transaction's revision.
    case put(revision: Int64)
    /// The key as it was before the delete, or nil when it was absent.
    case delete(previous: KeyValue?)
    /// The key as the operation saw it, including earlier writes of the same branch.
    case get(KeyValue?)
    /// The keys of the range in the order it asked for, including earlier
    /// writes of the same branch.
    case range([KeyValue])
}

/// The outcome of a transaction.
public struct TransactionResult: Sendable, Equatable {
    /// True when every compare held and the success branch ran. False when the failure branch ran.
    public var succeeded: Bool
    /// The store's revision after the transaction: the transaction's own
    /// revision when its branch changed a key, otherwise the unchanged current revision.
    public var revision: Int64
    /// One result per operation of the branch that ran, in order.
    public var results: [TransactionOperationResult]

    public init(succeeded: Bool, revision: Int64, results: [TransactionOperationResult]) {
        self.succeeded = succeeded
        self.revision = revision
        self.results = results
    }
}

/// The outcome of `compareAndSwap`.
public struct CompareAndSwapResult: Sendable, Equatable {
    /// True when the key's modRevision matched and the new value was written.
    public var succeeded: Bool
    /// The store's revision after the call: on success, the write's revision,
    /// which is the key's new modRevision.
    public var revision: Int64
    /// The key after the call: the value just written on success, the value
    /// that failed the compare on failure, and nil when the key is absent.
    public var current: KeyValue?

    public init(succeeded: Bool, revision: Int64, current: KeyValue?) {
        self.succeeded = succeeded
        self.revision = revision
        self.current = current
    }
}

/// The error every `LinearizableStore` method throws: a code, a message
/// naming the key, lease or value, and an optional cause.
public struct LinearizableStoreError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The lease does not exist: it expired, was revoked or was never granted.
        case leaseNotFound = "lease-not-found"
        /// A key is longer than `LinearizableStoreLimits.maximumKeyBytes`.
        case keyTooLarge = "key-too-large"
        /// A value is longer than `LinearizableStoreLimits.maximumValueBytes`.
        case valueTooLarge = "value-too-large"
        /// The store cannot be reached. A write may or may not have been applied.
        case unavailable = "unavailable"
        /// A request the store's rules reject: an empty key, a TTL out of range,
        /// a negative revision, or a transaction branch writing one key twice.
        case invalidArgument = "invalid-argument"
        /// A server store returned a response this client cannot use: a
        /// malformed body, or an error that no other code covers, such as
        /// permission denied. After a malformed response a write may or may
        /// not have been applied.
        case unexpectedResponse = "unexpected-response"
    }

    public let code: Code
    /// A sentence naming the failed key, lease or value and the next step.
    public let message: String
    /// The error underneath, such as a connection failure behind `unavailable`.
    public let cause: (any Error)?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        guard let cause else { return "\(code.rawValue): \(message)" }
        return "\(code.rawValue): \(message) (cause: \(cause))"
    }
}

/// The size and TTL limits every `LinearizableStore` enforces.
public enum LinearizableStoreLimits {
    /// 1,536 bytes of UTF-8. This is Homeport's own limit: etcd (3.4 docs,
    /// "System limits") documents no separate key limit, only the 1.5 MiB request limit.
    public static let maximumKeyBytes = 1536

    /// 1.5 MiB (1,572,864 bytes), etcd's default request limit (`--max-request-bytes`).
    ///
    /// NOTE: etcd applies that limit to the whole request, so an etcd server
    /// with the default setting rejects a value near this maximum once the
    /// key and the framing are added.
    public static let maximumValueBytes = 1_572_864

    /// 9,000,000,000 seconds, etcd's `MaxLeaseTTL` (lease/lessor.go).
    public static let maximumLeaseTTL: Duration = .seconds(9_000_000_000)

    /// Throws `invalidArgument` for an empty key and `keyTooLarge` for a key over the limit.
    static func validateKey(_ key: String) throws(LinearizableStoreError) {
        guard !key.isEmpty else {
            throw LinearizableStoreError(.invalidArgument, "invalid key: the key is empty, but every key needs at least one byte")
        }
        try validatePrefix(key)
    }

    /// Throws `keyTooLarge` for a prefix over the key limit. An empty prefix is valid.
    static func validatePrefix(_ prefix: String) throws(LinearizableStoreError) {
        let bytes = prefix.utf8.count
        guard bytes <= maximumKeyBytes else {
            throw LinearizableStoreError(
                .keyTooLarge, "key \(quotedKey(prefix)) is \(bytes) bytes, over the maximum of \(maximumKeyBytes) bytes")
        }
    }

    /// Throws `valueTooLarge` for a value over the limit.
    static func validateValue(_ value: [UInt8], key: String) throws(LinearizableStoreError) {
        guard value.count <= maximumValueBytes else {
            throw LinearizableStoreError(
                .valueTooLarge,
                "the value for key \(quotedKey(key)) is \(value.count) bytes, over the maximum of \(maximumValueBytes) bytes")
        }
    }

    /// Throws `invalidArgument` for a TTL that is not positive or is over `maximumLeaseTTL`.
    static func validateTTL(_ ttl: Duration) throws(LinearizableStoreError) {
        guard ttl > .zero, ttl <= maximumLeaseTTL else {
            throw LinearizableStoreError(
                .invalidArgument, "invalid lease TTL \(ttl): it must be positive and at most \(maximumLeaseTTL)")
        }
    }

    /// Throws `keyTooLarge` for a prefix or start key over the key limit, and
    /// `invalidArgument` for a start key outside the prefix or a limit below 1.
    static func validateRange(_ range: KeyRange) throws(LinearizableStoreError) {
        try validatePrefix(range.prefix)
        if let start = range.start {
            try validateKey(start)
            guard start.utf8.starts(with: range.prefix.utf8) else {
                throw LinearizableStoreError(
                    .invalidArgument,
                    "invalid range: start key \(quotedKey(start)) does not begin with the prefix \(quotedKey(range.prefix)); pass a key inside the prefix"
                )
            }
        }
        if let limit = range.limit, limit < 1 {
            throw LinearizableStoreError(
                .invalidArgument,
                "invalid range limit \(limit) for prefix \(quotedKey(range.prefix)): it must be at least 1, or nil for no limit")
        }
    }

    /// Checks every key and value of a transaction, and that no branch writes a key twice.
    static func validateTransaction(
        compares: [TransactionCompare], success: [TransactionOperation], failure: [TransactionOperation]
    ) throws(LinearizableStoreError) {
        for compare in compares {
            try validateKey(compare.key)
            if case .value(let key, let value) = compare {
                try validateValue(value, key: key)
            }
        }

        for (name, branch) in [("success", success), ("failure", failure)] {
            var writtenKeys: Set<[UInt8]> = []
            for operation in branch {
                switch operation {
                case .put(let key, let value, _):
                    try validateKey(key)
                    try validateValue(value, key: key)
                case .delete(let key), .get(let key):
                    try validateKey(key)
                case .range(let range):
                    try validateRange(range)
                }

                switch operation {
                case .put(let key, _, _), .delete(let key):
                    guard writtenKeys.insert(Array(key.utf8)).inserted else {
                        throw LinearizableStoreError(
                            .invalidArgument,
                            "invalid transaction: the \(name) branch writes key \(quotedKey(key)) more than once, so merge the writes into one operation"
                        )
                    }
                case .get, .range:
                    break
                }
            }
        }
    }
}

/// Quotes the key for an error message, cut to 64 characters so that a
/// too-large key does not flood the message.
func quotedKey(_ key: String) -> String {
    let limit = 64
    guard key.count > limit else { return "\"\(key)\"" }
    return "\"\(key.prefix(limit))…\""
}
