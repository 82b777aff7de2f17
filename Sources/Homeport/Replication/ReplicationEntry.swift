/// One replicated mutation of a session, as the home region sends it to the
/// standby copy at its neighbour.
///
/// Every mutation of a session gets exactly one entry, at the mutation's
/// `(epoch, seq)` stamp, so the positions the neighbour receives for a
/// session are contiguous. Kinds that are not replicated (KV-cache refs) still produce an
/// entry, of kind `skipped`, which carries only the stamp. Session creation is
/// position 0: a new session's first mutation has seq 1.
///
/// Invariants the home keeps and `ReplicationEntry(json:)` checks:
/// - `sessionCreated` has seq 0, and every other kind a seq of at least 1.
/// - `turnAppended`, `ledgerEntryWritten` and `valuePut` carry a record whose
///   stamp is the entry's stamp.
/// - `snapshot` is stamped with the session's last stamp when it was read. It
///   contains every record at or below that stamp that the session still
///   holds, and may contain later ones.
public struct ReplicationEntry: Sendable, Equatable {
    /// The mutation's kind and data.
    public enum Payload: Sendable, Equatable {
        /// The session was created at `createdAtMilliseconds`, in milliseconds
        /// since the Unix epoch.
        case sessionCreated(createdAtMilliseconds: Int64)
        /// A turn was appended. It carries the whole turn as stored.
        case turnAppended(Turn)
        /// A ledger write changed an entry. It carries the whole entry after the write.
        case ledgerEntryWritten(LedgerEntry)
        /// A session value was stored. It carries the value as stored.
        case valuePut(SessionValue)
        /// A mutation of a kind that is not replicated. Only its position counts.
        case skipped
        /// The session's whole replicated state at the entry's stamp. It takes
        /// the place of every earlier entry of the session.
        case snapshot(SessionSnapshot)
    }

    /// The payload kinds by their names on the wire.
    public enum Kind: String, Sendable, CaseIterable, CustomStringConvertible {
        case sessionCreated = "session-created"
        case turnAppended = "turn-appended"
        case ledgerEntryWritten = "ledger-entry-written"
        case valuePut = "value-put"
        case skipped
        case snapshot

        public var description: String { rawValue }
    }

    public var session: SessionID
    public var tenant: TenantID
    /// The region that is the session's home and wrote the mutation.
    public var home: String
    public var stamp: SessionStamp
    public var payload: Payload

    public init(session: SessionID, tenant: TenantID, home: String, stamp: SessionStamp, payload: Payload) {
        self.session = session
        self.tenant = tenant
        self.home = home
        self.stamp = stamp
        self.payload = payload
    }

    /// The entry's position in its session's history.
    public var seq: UInt64 { stamp.seq }

    /// Returns true for a snapshot entry.
    public var isSnapshot: Bool { payload.kind == .snapshot }

    /// A cheap estimate of the entry's size on the wire, in bytes: the turn
    /// content it carries plus 256 for each record and for the envelope.
    public var approximateBytes: Int {
        switch payload {
        case .turnAppended(let turn): 512 + turn.content.utf8.count
        case .snapshot(let snapshot):
            256 + snapshot.turns.reduce(0) { $0 + 256 + $1.content.utf8.count } + 256 * (snapshot.ledger.count + snapshot.values.count)
        case .sessionCreated, .ledgerEntryWritten, .valuePut, .skipped: 512
        }
    }
}

extension ReplicationEntry.Payload {
    public var kind: ReplicationEntry.Kind {
        switch self {
        case .sessionCreated: .sessionCreated
        case .turnAppended: .turnAppended
        case .ledgerEntryWritten: .ledgerEntryWritten
        case .valuePut: .valuePut
        case .skipped: .skipped
        case .snapshot: .snapshot
        }
    }
}

/// The replicated state of one session at one stamp: its turns, ledger and
/// values. KV-cache refs are not part of it, because they are never replicated.
///
/// The snapshot's position (the session's `lastSeq` when it was read) is the
/// stamp of the `ReplicationEntry` that carries it.
public struct SessionSnapshot: Sendable, Equatable {
    /// Milliseconds since the Unix epoch.
    public var createdAtMilliseconds: Int64
    /// Turns in sequence order.
    public var turns: [Turn]
    /// Ledger entries ordered by call id.
    public var ledger: [LedgerEntry]
    /// Values ordered by name.
    public var values: [SessionValue]

    /// Sorts `ledger` by call id and `values` by name, so that equal states
    /// give equal snapshots.
    public init(createdAtMilliseconds: Int64, turns: [Turn], ledger: [LedgerEntry], values: [SessionValue]) {
        self.createdAtMilliseconds = createdAtMilliseconds
        self.turns = turns
        self.ledger = ledger.sorted { $0.callID < $1.callID }
        self.values = values.sorted { $0.name < $1.name }
    }
}

extension ReplicationEntry {
    /// Builds the entry for a session that `SessionStore.createSession` just created.
    public static func sessionCreated(_ info: SessionInfo) -> ReplicationEntry {
        ReplicationEntry(
            session: info.id, tenant: info.tenant, home: info.home, stamp: SessionStamp(epoch: info.epoch, seq: 0),
            payload: .sessionCreated(createdAtMilliseconds: info.createdAtMilliseconds))
    }

    /// Builds a snapshot entry from what the home's store returns for the
    /// session: its info, all of its turns, ledger entries and values, read
    /// together. The entry is stamped with `info.lastStamp`.
    ///
    /// Read `info` before the records (or all of them under one lock). A
    /// record written after `info` may then appear in the snapshot too, which
    /// the standby tolerates because it applies records by stamp. A record at
    /// or below the stamp that the snapshot lacks would never reach the
    /// standby, since the snapshot takes the place of its entry.
    public static func snapshot(
        _ info: SessionInfo, turns: [Turn], ledger: [LedgerEntry], values: [SessionValue]
    ) -> ReplicationEntry {
        ReplicationEntry(
            session: info.id, tenant: info.tenant, home: info.home, stamp: info.lastStamp,
            payload: .snapshot(
                SessionSnapshot(createdAtMilliseconds: info.createdAtMilliseconds, turns: turns, ledger: ledger, values: values)))
    }
}
