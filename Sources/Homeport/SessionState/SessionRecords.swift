/// The position of a mutation in its session's history: the home epoch that
/// wrote it and a sequence number that grows by one for every mutation of the
/// session (turns, ledger writes, KV-cache refs and values share one counter).
///
/// Ordered by epoch, then by sequence number, which is the order a reconcile
/// merges in.
public struct SessionStamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var epoch: UInt64
    public var seq: UInt64

    public init(epoch: UInt64, seq: UInt64) {
        self.epoch = epoch
        self.seq = seq
    }

    public static func < (lhs: SessionStamp, rhs: SessionStamp) -> Bool {
        (lhs.epoch, lhs.seq) < (rhs.epoch, rhs.seq)
    }

    public var description: String { "(\(epoch), \(seq))" }
}

/// A session's identity and location: tenant, home region and epoch.
public struct SessionInfo: Sendable, Equatable {
    public var id: SessionID
    public var tenant: TenantID
    public var home: String
    public var epoch: UInt64
    /// The stamp of the latest mutation; `seq` is 0 before the first one.
    public var lastStamp: SessionStamp
    public var turnCount: Int
    /// Bytes of turn content currently held.
    public var bufferBytes: Int
    public var createdAtMilliseconds: Int64
    /// True for a session adopted from a standby copy after its home failed:
    /// its reads may miss writes the old home had not replicated.
    public var replicationGap: Bool = false
}

public enum TurnRole: String, Sendable, CaseIterable {
    case system
    case user
    case assistant
    case tool
}

/// One turn of a conversation buffer.
public struct Turn: Sendable, Equatable {
    public var stamp: SessionStamp
    public var role: TurnRole
    public var content: String
    /// Token count the caller reports for `content`.
    public var tokens: Int
    public var createdAtMilliseconds: Int64
    public var metadata: [String: String]
    public var idempotencyKey: String?
    /// True for a turn the old home wrote after its last replicated position
    /// and reconcile-forward brought to the new home after a takeover. It sits
    /// before the new epoch's turns.
    public var recovered: Bool = false
}

/// A turn to append, as the caller sends it.
public struct TurnDraft: Sendable, Equatable {
    public var role: TurnRole
    public var content: String
    public var tokens: Int
    public var metadata: [String: String]
    /// Retries that carry the same key return the first result instead of appending again.
    public var idempotencyKey: String?

    public init(role: TurnRole, content: String, tokens: Int, metadata: [String: String] = [:], idempotencyKey: String? = nil) {
        self.role = role
        self.content = content
        self.tokens = tokens
        self.metadata = metadata
        self.idempotencyKey = idempotencyKey
    }
}

/// The outcome of an append: the stored turn, and whether it was stored by an
/// earlier request with the same idempotency key.
public struct TurnAppendResult: Sendable, Equatable {
    public var turn: Turn
    public var replayed: Bool
}

/// The selection of turns a read returns.
public enum TurnSelection: Sendable, Equatable {
    case all
    /// The last `count` turns.
    case tail(Int)
    /// Turns whose sequence number is greater than the given one.
    case since(UInt64)
}

/// Status of a tool call. Legal transitions only move forward:
/// `requested → running → succeeded | failed | cancelled`, and any state may
/// be skipped. A terminal state never changes.
public enum LedgerStatus: String, Sendable, CaseIterable {
    case requested
    case running
    case succeeded
    case failed
    case cancelled

    /// Position in the status order; the three terminal states share one rank.
    public var rank: Int {
        switch self {
        case .requested: 0
        case .running: 1
        case .succeeded, .failed, .cancelled: 2
        }
    }

    public var isTerminal: Bool { rank == 2 }
}

/// One tool call in a session's ledger.
public struct LedgerEntry: Sendable, Equatable {
    public var callID: String
    public var name: String
    public var arguments: JSONValue
    public var status: LedgerStatus
    public var result: JSONValue?
    public var stamp: SessionStamp
    public var updatedAtMilliseconds: Int64
    /// Set by reconcile-forward when the old home had ended the call in a
    /// different terminal state than the new home: the old home's status. The
    /// entry keeps the new home's status, and both are reported.
    public var conflictingStatus: LedgerStatus? = nil
}

/// A ledger write as the caller sends it. `name` is required when the call is new.
public struct LedgerWrite: Sendable, Equatable {
    public var callID: String
    public var name: String?
    public var arguments: JSONValue?
    public var status: LedgerStatus
    public var result: JSONValue?

    public init(callID: String, name: String? = nil, arguments: JSONValue? = nil, status: LedgerStatus, result: JSONValue? = nil) {
        self.callID = callID
        self.name = name
        self.arguments = arguments
        self.status = status
        self.result = result
    }
}

/// The outcome of a ledger write. `applied` is false when the write carried an
/// older or equal status and so changed nothing.
public struct LedgerWriteResult: Sendable, Equatable {
    public var entry: LedgerEntry
    public var applied: Bool
}

/// A KV-cache block a session holds, and where it lives.
public struct KVCacheRef: Sendable, Equatable {
    /// The prefix hash id of the block.
    public var block: Int64
    /// The block's location (a node, device or cache tier), opaque to Homeport.
    public var location: String
    public var stamp: SessionStamp
    public var expiresAtMilliseconds: Int64
}

/// A small named JSON value of a session; the highest stamp wins.
public struct SessionValue: Sendable, Equatable {
    public var name: String
    public var value: JSONValue
    public var stamp: SessionStamp
    public var updatedAtMilliseconds: Int64
}
