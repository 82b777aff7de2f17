/// The sessions that read a state kind: only the session that wrote it, or any session.
public enum PolicyReaders: String, Sendable, CaseIterable {
    case singleSession = "single-session"
    case crossSession = "cross-session"
}

/// The harm done when a reader sees an out-of-date value of a state kind.
///
/// Ordered from least to most harmful: `invisible < annoying < incorrect`.
public enum StaleReadCost: String, Sendable, CaseIterable, Comparable {
    /// No reader can tell, for example a conversation buffer read back by its own session.
    case invisible
    /// A reader notices but nothing breaks, for example a slightly old rate-limit count.
    case annoying
    /// A stale read breaks a guarantee, for example spending a quota twice.
    case incorrect

    public static func < (lhs: StaleReadCost, rhs: StaleReadCost) -> Bool {
        lhs.rank < rhs.rank
    }

    private var rank: Int {
        switch self {
        case .invisible: 0
        case .annoying: 1
        case .incorrect: 2
        }
    }
}

/// The mechanism that keeps a state kind consistent.
///
/// Ordered from cheapest to strongest: `sessionLocal < eventuallyGlobal < linearizable`.
public enum Consistency: String, Sendable, CaseIterable, Comparable {
    /// Stored in the session's home region and written without any cross-region round trip.
    case sessionLocal = "session-local"
    /// Stored in every region and merged by hybrid logical clock, last writer wins.
    case eventuallyGlobal = "eventually-global"
    /// Stored in the linearizable store, so every write waits for consensus.
    case linearizable

    public static func < (lhs: Consistency, rhs: Consistency) -> Bool {
        lhs.rank < rhs.rank
    }

    private var rank: Int {
        switch self {
        case .sessionLocal: 0
        case .eventuallyGlobal: 1
        case .linearizable: 2
        }
    }
}

/// The regions that receive copies of a state kind's entries.
///
/// Valid pairs are session-local with `neighbour` or `none`, eventually-global with
/// `allRegions`, and linearizable with `none`, because the linearizable store
/// replicates by itself. `PolicyTable.validate()` reports any other pair.
public enum ReplicationMode: String, Sendable, CaseIterable {
    /// Copied lazily to the standby copy in the next region of the ring.
    case neighbour
    /// Not copied by Homeport.
    case none
    /// Pushed to every region.
    case allRegions = "all-regions"

    /// Returns the mode a row gets when its file entry sets no `replication`.
    public static func defaultMode(for consistency: Consistency) -> ReplicationMode {
        switch consistency {
        case .sessionLocal: .neighbour
        case .eventuallyGlobal: .allRegions
        case .linearizable: .none
        }
    }
}

/// The action taken when a write would exceed a session's size limits.
public enum OverflowPolicy: String, Sendable, CaseIterable {
    /// The write fails and the stored entries stay as they are.
    case reject
    /// The oldest entries are removed until the new entry fits.
    case dropOldest = "drop-oldest"
}

/// Size limits of one state kind, counted per session.
///
/// A `nil` maximum means no limit. Every maximum that is set must be positive.
public struct SizeLimits: Sendable, Equatable {
    public var maxEntries: Int?
    public var maxEntryBytes: Int?
    public var maxTotalBytes: Int?
    public var overflow: OverflowPolicy

    public init(
        maxEntries: Int? = nil,
        maxEntryBytes: Int? = nil,
        maxTotalBytes: Int? = nil,
        overflow: OverflowPolicy = .reject
    ) {
        self.maxEntries = maxEntries
        self.maxEntryBytes = maxEntryBytes
        self.maxTotalBytes = maxTotalBytes
        self.overflow = overflow
    }

    /// Limits with no maximum and the default overflow policy, which is what a row without `limits` gets.
    public static let unlimited = SizeLimits()
}

/// One state kind of the policy table and the options that go with it.
public struct PolicyRow: Sendable, Equatable {
    /// Name of the state kind, matching `^[a-z][a-z0-9_]{0,63}$`.
    public var kind: String
    public var readers: PolicyReaders
    public var staleReadCost: StaleReadCost
    public var consistency: Consistency
    public var replication: ReplicationMode
    /// Lifetime of an entry in seconds, or `nil` for entries that do not expire.
    public var ttlSeconds: Int?
    /// Whether the neighbour may serve reads from its standby copy. Valid only for
    /// session-local kinds whose stale reads are invisible.
    public var staleReadsAtNeighbour: Bool
    public var limits: SizeLimits
    /// Free text for operators. Empty when the file gives none.
    public var notes: String

    public init(
        kind: String,
        readers: PolicyReaders,
        staleReadCost: StaleReadCost,
        consistency: Consistency,
        replication: ReplicationMode,
        ttlSeconds: Int? = nil,
        staleReadsAtNeighbour: Bool = false,
        limits: SizeLimits = .unlimited,
        notes: String = ""
    ) {
        self.kind = kind
        self.readers = readers
        self.staleReadCost = staleReadCost
        self.consistency = consistency
        self.replication = replication
        self.ttlSeconds = ttlSeconds
        self.staleReadsAtNeighbour = staleReadsAtNeighbour
        self.limits = limits
        self.notes = notes
    }

    /// Creates a row whose replication is `ReplicationMode.defaultMode(for: consistency)`.
    public init(
        kind: String,
        readers: PolicyReaders,
        staleReadCost: StaleReadCost,
        consistency: Consistency,
        ttlSeconds: Int? = nil,
        staleReadsAtNeighbour: Bool = false,
        limits: SizeLimits = .unlimited,
        notes: String = ""
    ) {
        self.init(
            kind: kind,
            readers: readers,
            staleReadCost: staleReadCost,
            consistency: consistency,
            replication: ReplicationMode.defaultMode(for: consistency),
            ttlSeconds: ttlSeconds,
            staleReadsAtNeighbour: staleReadsAtNeighbour,
            limits: limits,
            notes: notes
        )
    }

    /// Returns whether `name` is a valid kind: a lowercase ASCII letter followed by
    /// at most 63 lowercase ASCII letters, digits or underscores.
    public static func isValidKind(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, bytes.count <= 64 else { return false }
        guard isLowercaseLetter(first) else { return false }

        return bytes.dropFirst().allSatisfy { byte in
            isLowercaseLetter(byte) || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || byte == UInt8(ascii: "_")
        }
    }

    private static func isLowercaseLetter(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")
    }
}
