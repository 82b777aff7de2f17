/// The records `ConsensusSessionStore` keeps in the linearizable store.
///
/// Every record is binary: a format byte (1), then fields in a fixed order.
/// Unsigned numbers are LEB128 varints, signed ones zigzag varints, and
/// strings and JSON texts a varint byte count followed by the bytes. Turn
/// content is stored as its raw UTF-8 bytes, so a turn's record is its
/// content plus a few dozen bytes, however many quotes or control characters
/// the content has. That keeps a turn of `maximumTurnBytes` within one etcd
/// request.
///
/// - Meta: tenant, home, epoch, last seq, created at, flags (1: replication
///   gap, 2: adopted position follows), adopted epoch and seq, ledger count,
///   value count, idempotency first, next and purged ordinals, the turn index
///   (count, then epoch, seq and content bytes of each) and the dropped turns
///   (count, then epoch and seq of each).
/// - Turn: epoch, seq, role, tokens, created at, flags (1: recovered, 2:
///   idempotency key follows), idempotency key, metadata (count, then name
///   and value of each, sorted by name), content.
/// - Idempotency record: ordinal, epoch, seq, role, tokens, content bytes,
///   content hash.
/// - Ledger entry: call id, name, status, epoch, seq, updated at, flags (1:
///   result follows, 2: conflicting status follows), conflicting status,
///   arguments JSON, result JSON.
/// - KV-cache refs: count, then block, location, epoch, seq and expiry time of each.
/// - Session value: name, epoch, seq, updated at, JSON.
///
/// Decoding never traps: a record of another shape throws
/// `ConsensusRecordError` naming the field.
enum ConsensusSessionCodec {
    static let formatVersion: UInt8 = 1

    // MARK: Meta

    static func encodeMeta(_ meta: ConsensusSessionMeta) -> [UInt8] {
        var writer = RecordWriter()
        writer.string(meta.tenant.rawValue)
        writer.string(meta.home)
        writer.unsigned(meta.epoch)
        writer.unsigned(meta.lastSeq)
        writer.signed(meta.createdAtMilliseconds)
        writer.byte((meta.replicationGap ? 1 : 0) | (meta.adoptedPosition == nil ? 0 : 2))
        if let adopted = meta.adoptedPosition {
            writer.unsigned(adopted.epoch)
            writer.unsigned(adopted.seq)
        }
        writer.count(meta.ledgerCount)
        writer.count(meta.valueCount)
        writer.unsigned(meta.idempotencyFirstOrdinal)
        writer.unsigned(meta.idempotencyNextOrdinal)
        writer.unsigned(meta.idempotencyPurgedOrdinal)
        writer.count(meta.turns.count)
        for turn in meta.turns {
            writer.unsigned(turn.stamp.epoch)
            writer.unsigned(turn.stamp.seq)
            writer.count(turn.contentBytes)
        }
        writer.count(meta.droppedTurns.count)
        for stamp in meta.droppedTurns {
            writer.unsigned(stamp.epoch)
            writer.unsigned(stamp.seq)
        }
        return writer.bytes
    }

    static func decodeMeta(_ bytes: [UInt8]) throws(ConsensusRecordError) -> ConsensusSessionMeta {
        var reader = try RecordReader(bytes, record: "meta")
        guard let tenant = TenantID(try reader.string("tenant")) else {
            throw ConsensusRecordError(record: "meta", reason: "the tenant is not a valid tenant id")
        }
        var meta = ConsensusSessionMeta(
            tenant: tenant, home: try reader.string("home"), epoch: try reader.unsigned("epoch"), createdAtMilliseconds: 0)

        meta.lastSeq = try reader.unsigned("last seq")
        meta.createdAtMilliseconds = try reader.signed("created at")
        let flags = try reader.byte("flags")
        meta.replicationGap = flags & 1 != 0
        if flags & 2 != 0 {
            meta.adoptedPosition = SessionStamp(epoch: try reader.unsigned("adopted epoch"), seq: try reader.unsigned("adopted seq"))
        }
        meta.ledgerCount = try reader.size("ledger count")
        meta.valueCount = try reader.size("value count")
        meta.idempotencyFirstOrdinal = try reader.unsigned("first idempotency ordinal")
        meta.idempotencyNextOrdinal = try reader.unsigned("next idempotency ordinal")
        meta.idempotencyPurgedOrdinal = try reader.unsigned("purged idempotency ordinal")

        let turnCount = try reader.count("turn count")
        meta.turns.reserveCapacity(turnCount)
        for _ in 0..<turnCount {
            let stamp = SessionStamp(epoch: try reader.unsigned("turn epoch"), seq: try reader.unsigned("turn seq"))
            meta.turns.append(ConsensusSessionMeta.TurnPosition(stamp: stamp, contentBytes: try reader.size("turn bytes")))
        }

        let droppedCount = try reader.count("dropped turn count")
        for _ in 0..<droppedCount {
            meta.droppedTurns.append(SessionStamp(epoch: try reader.unsigned("dropped epoch"), seq: try reader.unsigned("dropped seq")))
        }
        try reader.finish()
        return meta
    }

    // MARK: Turns

    static func encodeTurn(_ turn: Turn) -> [UInt8] {
        var writer = RecordWriter()
        writer.unsigned(turn.stamp.epoch)
        writer.unsigned(turn.stamp.seq)
        writer.string(turn.role.rawValue)
        writer.signed(Int64(turn.tokens))
        writer.signed(turn.createdAtMilliseconds)
        writer.byte((turn.recovered ? 1 : 0) | (turn.idempotencyKey == nil ? 0 : 2))
        if let key = turn.idempotencyKey {
            writer.string(key)
        }
        writer.count(turn.metadata.count)
        for (name, value) in turn.metadata.sorted(by: { $0.key < $1.key }) {
            writer.string(name)
            writer.string(value)
        }
        writer.string(turn.content)
        return writer.bytes
    }

    static func decodeTurn(_ bytes: [UInt8]) throws(ConsensusRecordError) -> Turn {
        var reader = try RecordReader(bytes, record: "turn")
        let stamp = SessionStamp(epoch: try reader.unsigned("epoch"), seq: try reader.unsigned("seq"))
        let role = try reader.role()
        let tokens = try reader.signed("tokens")
        let createdAt = try reader.signed("created at")
        let flags = try reader.byte("flags")
        let key = flags & 2 != 0 ? try reader.string("idempotency key") : nil
        var metadata: [String: String] = [:]
        for _ in 0..<(try reader.count("metadata count")) {
            let name = try reader.string("metadata name")
            metadata[name] = try reader.string("metadata value")
        }
        let content = try reader.string("content")
        try reader.finish()
        guard let tokenCount = Int(exactly: tokens) else {
            throw ConsensusRecordError(record: "turn", reason: "the token count \(tokens) does not fit an Int")
        }
        return Turn(
            stamp: stamp, role: role, content: content, tokens: tokenCount, createdAtMilliseconds: createdAt, metadata: metadata,
            idempotencyKey: key, recovered: flags & 1 != 0)
    }

    // MARK: Idempotency records

    /// An idempotency key's record: the fingerprint `SessionRecord` compares
    /// and the ordinal that orders the keys for forgetting.
    struct IdempotencyRecord: Sendable, Equatable {
        var ordinal: UInt64
        var stamp: SessionStamp
        var role: TurnRole
        var tokens: Int
        var contentBytes: Int
        var contentHash: UInt64
    }

    static func encodeIdempotencyRecord(_ record: IdempotencyRecord) -> [UInt8] {
        var writer = RecordWriter()
        writer.unsigned(record.ordinal)
        writer.unsigned(record.stamp.epoch)
        writer.unsigned(record.stamp.seq)
        writer.string(record.role.rawValue)
        writer.signed(Int64(record.tokens))
        writer.count(record.contentBytes)
        writer.unsigned(record.contentHash)
        return writer.bytes
    }

    static func decodeIdempotencyRecord(_ bytes: [UInt8]) throws(ConsensusRecordError) -> IdempotencyRecord {
        var reader = try RecordReader(bytes, record: "idempotency record")
        let ordinal = try reader.unsigned("ordinal")
        let stamp = SessionStamp(epoch: try reader.unsigned("epoch"), seq: try reader.unsigned("seq"))
        let role = try reader.role()
        let tokens = try reader.signed("tokens")
        let contentBytes = try reader.size("content bytes")
        let hash = try reader.unsigned("content hash")
        try reader.finish()
        guard let tokenCount = Int(exactly: tokens) else {
            throw ConsensusRecordError(record: "idempotency record", reason: "the token count \(tokens) does not fit an Int")
        }
        return IdempotencyRecord(
            ordinal: ordinal, stamp: stamp, role: role, tokens: tokenCount, contentBytes: contentBytes, contentHash: hash)
    }

    // MARK: Ledger entries

    static func encodeLedgerEntry(_ entry: LedgerEntry) -> [UInt8] {
        var writer = RecordWriter()
        writer.string(entry.callID)
        writer.string(entry.name)
        writer.string(entry.status.rawValue)
        writer.unsigned(entry.stamp.epoch)
        writer.unsigned(entry.stamp.seq)
        writer.signed(entry.updatedAtMilliseconds)
        writer.byte((entry.result == nil ? 0 : 1) | (entry.conflictingStatus == nil ? 0 : 2))
        if let conflict = entry.conflictingStatus {
            writer.string(conflict.rawValue)
        }
        writer.counted(entry.arguments.serializedBytes())
        if let result = entry.result {
            writer.counted(result.serializedBytes())
        }
        return writer.bytes
    }

    static func decodeLedgerEntry(_ bytes: [UInt8]) throws(ConsensusRecordError) -> LedgerEntry {
        var reader = try RecordReader(bytes, record: "ledger entry")
        let callID = try reader.string("call id")
        let name = try reader.string("name")
        let status = try reader.status("status")
        let stamp = SessionStamp(epoch: try reader.unsigned("epoch"), seq: try reader.unsigned("seq"))
        let updatedAt = try reader.signed("updated at")
        let flags = try reader.byte("flags")
        let conflict = flags & 2 != 0 ? try reader.status("conflicting status") : nil
        let arguments = try reader.json("arguments")
        let result = flags & 1 != 0 ? try reader.json("result") : nil
        try reader.finish()
        return LedgerEntry(
            callID: callID, name: name, arguments: arguments, status: status, result: result, stamp: stamp,
            updatedAtMilliseconds: updatedAt, conflictingStatus: conflict)
    }

    // MARK: KV-cache refs

    static func encodeKVCacheRefs(_ refs: [Int64: KVCacheRef]) -> [UInt8] {
        var writer = RecordWriter()
        writer.count(refs.count)
        for ref in refs.values.sorted(by: { $0.block < $1.block }) {
            writer.signed(ref.block)
            writer.string(ref.location)
            writer.unsigned(ref.stamp.epoch)
            writer.unsigned(ref.stamp.seq)
            writer.signed(ref.expiresAtMilliseconds)
        }
        return writer.bytes
    }

    static func decodeKVCacheRefs(_ bytes: [UInt8]) throws(ConsensusRecordError) -> [Int64: KVCacheRef] {
        var reader = try RecordReader(bytes, record: "KV-cache refs")
        var refs: [Int64: KVCacheRef] = [:]
        for _ in 0..<(try reader.count("ref count")) {
            let block = try reader.signed("block")
            let location = try reader.string("location")
            let stamp = SessionStamp(epoch: try reader.unsigned("epoch"), seq: try reader.unsigned("seq"))
            refs[block] = KVCacheRef(block: block, location: location, stamp: stamp, expiresAtMilliseconds: try reader.signed("expiry"))
        }
        try reader.finish()
        return refs
    }

    // MARK: Session values

    static func encodeValue(_ value: SessionValue) -> [UInt8] {
        var writer = RecordWriter()
        writer.string(value.name)
        writer.unsigned(value.stamp.epoch)
        writer.unsigned(value.stamp.seq)
        writer.signed(value.updatedAtMilliseconds)
        writer.counted(value.value.serializedBytes())
        return writer.bytes
    }

    static func decodeValue(_ bytes: [UInt8]) throws(ConsensusRecordError) -> SessionValue {
        var reader = try RecordReader(bytes, record: "session value")
        let name = try reader.string("name")
        let stamp = SessionStamp(epoch: try reader.unsigned("epoch"), seq: try reader.unsigned("seq"))
        let updatedAt = try reader.signed("updated at")
        let value = try reader.json("value")
        try reader.finish()
        return SessionValue(name: name, value: value, stamp: stamp, updatedAtMilliseconds: updatedAt)
    }
}

/// A stored record that is not in the format this version writes.
struct ConsensusRecordError: Error, Sendable, CustomStringConvertible {
    /// The kind of record, such as `meta` or `turn`.
    let record: String
    let reason: String

    var description: String { "the \(record) record is malformed: \(reason)" }
}

/// Builds a record: the format byte, then fields appended in order.
struct RecordWriter {
    private(set) var bytes: [UInt8] = [ConsensusSessionCodec.formatVersion]

    mutating func byte(_ value: UInt8) {
        bytes.append(value)
    }

    /// Appends a LEB128 varint: seven bits per byte, low bits first.
    mutating func unsigned(_ value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    /// Appends a zigzag varint, so that small negative numbers stay short.
    mutating func signed(_ value: Int64) {
        unsigned(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    /// Appends a count or size, which is never negative.
    mutating func count(_ value: Int) {
        unsigned(UInt64(max(value, 0)))
    }

    mutating func counted(_ value: [UInt8]) {
        count(value.count)
        bytes.append(contentsOf: value)
    }

    mutating func string(_ value: String) {
        counted(Array(value.utf8))
    }
}

/// Reads a record's fields in the order `RecordWriter` appended them.
struct RecordReader {
    private let bytes: [UInt8]
    private var offset = 1
    /// The kind of record, for error messages.
    let record: String

    /// Starts after the format byte, which must be the current format.
    init(_ bytes: [UInt8], record: String) throws(ConsensusRecordError) {
        guard let format = bytes.first else {
            throw ConsensusRecordError(record: record, reason: "the record is empty")
        }
        guard format == ConsensusSessionCodec.formatVersion else {
            throw ConsensusRecordError(
                record: record, reason: "format \(format) is not the format \(ConsensusSessionCodec.formatVersion) this version reads")
        }
        self.bytes = bytes
        self.record = record
    }

    private func failure(_ field: String, _ reason: String) -> ConsensusRecordError {
        ConsensusRecordError(record: record, reason: "\(field) at byte \(offset) \(reason)")
    }

    mutating func byte(_ field: String) throws(ConsensusRecordError) -> UInt8 {
        guard offset < bytes.count else { throw failure(field, "is past the end") }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func unsigned(_ field: String) throws(ConsensusRecordError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < bytes.count else { throw failure(field, "is past the end") }
            let byte = bytes[offset]
            offset += 1
            guard shift < 64, shift < 63 || byte <= 1 else { throw failure(field, "does not fit 64 bits") }
            value |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return value }
            shift += 7
        }
    }

    mutating func signed(_ field: String) throws(ConsensusRecordError) -> Int64 {
        let encoded = try unsigned(field)
        return Int64(bitPattern: (encoded >> 1) ^ (0 &- (encoded & 1)))
    }

    /// Reads the number of items that follow in this record. Each takes at
    /// least one byte, so a count above the bytes left is malformed, and a
    /// damaged record cannot make a loop run long.
    mutating func count(_ field: String) throws(ConsensusRecordError) -> Int {
        let value = try unsigned(field)
        guard value <= UInt64(bytes.count - offset) else {
            throw failure(field, "is \(value), more items than the \(bytes.count - offset) bytes left can hold")
        }
        return Int(value)
    }

    /// Reads a size or a count of things kept elsewhere, such as a turn's content bytes.
    mutating func size(_ field: String) throws(ConsensusRecordError) -> Int {
        let value = try unsigned(field)
        guard let size = Int(exactly: value), size >= 0 else { throw failure(field, "is \(value), which does not fit an Int") }
        return size
    }

    mutating func counted(_ field: String) throws(ConsensusRecordError) -> ArraySlice<UInt8> {
        let length = try size(field)
        guard length <= bytes.count - offset else { throw failure(field, "has \(length) bytes, past the end") }
        defer { offset += length }
        return bytes[offset..<(offset + length)]
    }

    mutating func string(_ field: String) throws(ConsensusRecordError) -> String {
        let slice = try counted(field)
        guard let text = String(validating: slice, as: UTF8.self) else { throw failure(field, "is not valid UTF-8") }
        return text
    }

    mutating func json(_ field: String) throws(ConsensusRecordError) -> JSONValue {
        let slice = try counted(field)
        do {
            return try JSONValue.parse(Array(slice))
        } catch {
            throw failure(field, "is not valid JSON (\(error))")
        }
    }

    mutating func role() throws(ConsensusRecordError) -> TurnRole {
        let text = try string("role")
        guard let role = TurnRole(rawValue: text) else { throw failure("role", "is \"\(text)\", not a turn role") }
        return role
    }

    mutating func status(_ field: String) throws(ConsensusRecordError) -> LedgerStatus {
        let text = try string(field)
        guard let status = LedgerStatus(rawValue: text) else { throw failure(field, "is \"\(text)\", not a ledger status") }
        return status
    }

    /// Checks that every byte was read.
    func finish() throws(ConsensusRecordError) {
        guard offset == bytes.count else {
            throw ConsensusRecordError(record: record, reason: "\(bytes.count - offset) bytes follow the last field")
        }
    }
}
