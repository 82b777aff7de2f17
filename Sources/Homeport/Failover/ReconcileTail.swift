/// The records a returning region ships to the region that took it over, for
/// one session: every record the old home wrote after the position the new home
/// already holds.
///
/// A tail with `sinceSeq` 0 is the session's whole replicated state. KV-cache
/// refs are never part of it: they are recomputable and dropped on takeover.
public struct ReconcileTail: Sendable, Equatable {
    public var session: SessionID
    public var tenant: TenantID
    /// The old home that wrote the records.
    public var home: String
    /// The session's last stamp at the old home.
    public var lastStamp: SessionStamp
    /// The old home's seq up to which the new home has every record. The tail
    /// contains every record stamped after it.
    public var sinceSeq: UInt64
    /// Milliseconds since the Unix epoch.
    public var createdAtMilliseconds: Int64
    /// Turns in stamp order.
    public var turns: [Turn]
    /// Ledger entries ordered by call id.
    public var ledger: [LedgerEntry]
    /// Values ordered by name.
    public var values: [SessionValue]

    /// Builds the tail of a session from its replicated state at the old home,
    /// keeping the records stamped after `(info.epoch, sinceSeq)`, or all of
    /// them when `sinceSeq` is 0.
    public init(
        _ state: (info: SessionInfo, turns: [Turn], ledger: [LedgerEntry], values: [SessionValue]), sinceSeq: UInt64
    ) {
        let boundary = SessionStamp(epoch: state.info.lastStamp.epoch, seq: sinceSeq)
        let keep = { (stamp: SessionStamp) in sinceSeq == 0 || stamp > boundary }
        self.init(
            session: state.info.id, tenant: state.info.tenant, home: state.info.home, lastStamp: state.info.lastStamp,
            sinceSeq: sinceSeq, createdAtMilliseconds: state.info.createdAtMilliseconds,
            turns: state.turns.filter { keep($0.stamp) }, ledger: state.ledger.filter { keep($0.stamp) },
            values: state.values.filter { keep($0.stamp) })
    }

    public init(
        session: SessionID, tenant: TenantID, home: String, lastStamp: SessionStamp, sinceSeq: UInt64, createdAtMilliseconds: Int64,
        turns: [Turn], ledger: [LedgerEntry], values: [SessionValue]
    ) {
        self.session = session
        self.tenant = tenant
        self.home = home
        self.lastStamp = lastStamp
        self.sinceSeq = sinceSeq
        self.createdAtMilliseconds = createdAtMilliseconds
        self.turns = turns
        self.ledger = ledger
        self.values = values
    }

    /// Records in the tail: turns, ledger entries and values.
    public var recordCount: Int { turns.count + ledger.count + values.count }

    /// True when the tail is the session's whole state, not a tail after a known position.
    public var isComplete: Bool { sinceSeq == 0 }

    var json: JSONValue {
        .object([
            "session": .string(session.rawValue),
            "tenant": .string(tenant.rawValue),
            "home": .string(home),
            "epoch": .integer(Int64(lastStamp.epoch)),
            "seq": .integer(Int64(lastStamp.seq)),
            "sinceSeq": .integer(Int64(sinceSeq)),
            "createdAt": .integer(createdAtMilliseconds),
            "turns": .array(turns.map(ReplicationJSON.turn)),
            "ledger": .array(ledger.map(ReplicationJSON.ledgerEntry)),
            "values": .array(values.map(ReplicationJSON.value)),
        ])
    }

    /// Decodes a tail sent by `home`; every record must be stamped at or
    /// below the tail's last stamp.
    init(_ object: JSONObjectReader) throws(RequestError) {
        var object = object

        let sessionText = try object.string("session", maximumBytes: 128)
        guard let session = SessionID(sessionText) else {
            throw object.invalidValue("session", "is not a session id (\(SessionID.allowedCharactersDescription))")
        }
        let tenantText = try object.string("tenant", maximumBytes: 128)
        guard let tenant = TenantID(tenantText) else {
            throw object.invalidValue("tenant", "is not a tenant id")
        }
        let home = try object.string("home", maximumBytes: 64)
        let lastStamp = try ReplicationJSON.stamp(&object)
        let sinceSeq = try object.unsignedInteger("sinceSeq")
        guard sinceSeq <= lastStamp.seq else {
            throw object.invalidValue("sinceSeq", "is \(sinceSeq), past the tail's last seq \(lastStamp.seq)")
        }

        var turns: [Turn] = []
        for element in try ReplicationJSON.objects("turns", in: &object) {
            turns.append(try ReplicationJSON.decodeTurn(element))
        }
        var ledger: [LedgerEntry] = []
        for element in try ReplicationJSON.objects("ledger", in: &object) {
            ledger.append(try ReplicationJSON.decodeLedgerEntry(element))
        }
        var values: [SessionValue] = []
        for element in try ReplicationJSON.objects("values", in: &object) {
            values.append(try ReplicationJSON.decodeValue(element))
        }
        let newest = (turns.map(\.stamp) + ledger.map(\.stamp) + values.map(\.stamp)).max()
        if let newest, newest > lastStamp {
            throw object.invalidValue("seq", "is below a record of the tail stamped \(newest)")
        }

        self.init(
            session: session, tenant: tenant, home: home, lastStamp: lastStamp, sinceSeq: sinceSeq,
            createdAtMilliseconds: try object.integer("createdAt", in: ReplicationJSON.anyInteger),
            turns: turns.sorted { $0.stamp < $1.stamp }, ledger: ledger, values: values)
        try object.finish()
    }
}
