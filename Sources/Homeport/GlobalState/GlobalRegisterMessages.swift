/// `POST /internal/v1/registers/push`: entries a region sends to a peer.
///
/// `{"entries": [entry, …], "repair": false}`. `repair` is true when the
/// entries respond to a peer's anti-entropy request, which counts them as repairs.
struct RegisterPush: Sendable, Equatable {
    var entries: [GlobalRegisterEntry]
    var repair: Bool

    var json: JSONValue {
        .object(["entries": .array(entries.map(\.json)), "repair": .bool(repair)])
    }

    /// - Throws: `RequestError` naming the field at fault, such as `entries[2].stamp.logical`.
    init(jsonBytes: [UInt8], maximumEntries: Int) throws(RequestError) {
        var body = try JSONObjectReader.parseBody(jsonBytes)
        entries = try RegisterMessages.entries("entries", in: &body, maximumCount: maximumEntries)
        repair = try body.optionalBool("repair") ?? false
        try body.finish()
    }

    init(entries: [GlobalRegisterEntry], repair: Bool) {
        self.entries = entries
        self.repair = repair
    }
}

/// The reply to a push: `{"applied": 2, "stale": 0, "rejected": ["name", …]}`.
/// Every entry not named in `rejected` is stored at the receiver, or
/// superseded there by a newer one.
struct RegisterPushReply: Sendable, Equatable {
    var applied: Int
    var stale: Int
    var rejected: [String]

    var json: JSONValue {
        .object([
            "applied": .integer(Int64(applied)), "stale": .integer(Int64(stale)),
            "rejected": .array(rejected.map(JSONValue.string)),
        ])
    }

    init(applied: Int, stale: Int, rejected: [String]) {
        self.applied = applied
        self.stale = stale
        self.rejected = rejected
    }

    init(jsonBytes: [UInt8], maximumEntries: Int) throws(RequestError) {
        var body = try JSONObjectReader.parseBody(jsonBytes)
        applied = Int(try body.integer("applied", in: 0...Int64(maximumEntries)))
        stale = Int(try body.integer("stale", in: 0...Int64(maximumEntries)))
        rejected = try RegisterMessages.names("rejected", in: &body, maximumCount: maximumEntries)
        try body.finish()
    }
}

/// `POST /internal/v1/registers/digest`: one anti-entropy exchange.
///
/// `{"digest": {"<name>": stamp, …}, "entries": [entry, …]}`: the sender's
/// name and stamp of every register, and the sender's local writes that the
/// receiver has not acknowledged.
struct RegisterDigestRequest: Sendable, Equatable {
    var digest: [String: RegisterStamp]
    var entries: [GlobalRegisterEntry]

    var json: JSONValue {
        .object([
            "digest": .object(digest.mapValues(\.json)),
            "entries": .array(entries.map(\.json)),
        ])
    }

    init(digest: [String: RegisterStamp], entries: [GlobalRegisterEntry]) {
        self.digest = digest
        self.entries = entries
    }

    init(jsonBytes: [UInt8], maximumEntries: Int) throws(RequestError) {
        var body = try JSONObjectReader.parseBody(jsonBytes)
        var digestObject = try body.object("digest")
        guard digestObject.keys.count <= maximumEntries else {
            throw body.invalidValue("digest", "has \(digestObject.keys.count) registers; the maximum is \(maximumEntries)")
        }
        var digest: [String: RegisterStamp] = [:]
        for name in digestObject.keys {
            guard GlobalRegisterEntry.isValidName(name) else {
                throw RequestError(
                    .invalidValue, field: digestObject.path(of: name),
                    detail: "\"\(name.prefix(80))\" is not a register name: a register name is \(GlobalRegisterEntry.nameRule)")
            }
            digest[name] = try RegisterStamp(reading: digestObject.object(name))
        }
        try digestObject.finish()
        self.digest = digest
        entries = try RegisterMessages.entries("entries", in: &body, maximumCount: maximumEntries)
        try body.finish()
    }
}

/// The reply to a digest:
/// `{"entries": [entry, …], "requested": ["name", …], "rejected": ["name", …]}`.
/// `entries` are the receiver's registers that are newer than the digest or
/// missing from it (up to a byte budget, oldest stamp first). `requested`
/// names the registers where the digest is newer, which the sender then
/// pushes with `repair: true`. `rejected` names the request's entries that
/// were not stored.
struct RegisterDigestReply: Sendable, Equatable {
    var entries: [GlobalRegisterEntry]
    var requested: [String]
    var rejected: [String]

    var json: JSONValue {
        .object([
            "entries": .array(entries.map(\.json)),
            "requested": .array(requested.map(JSONValue.string)),
            "rejected": .array(rejected.map(JSONValue.string)),
        ])
    }

    init(entries: [GlobalRegisterEntry], requested: [String], rejected: [String]) {
        self.entries = entries
        self.requested = requested
        self.rejected = rejected
    }

    init(jsonBytes: [UInt8], maximumEntries: Int) throws(RequestError) {
        var body = try JSONObjectReader.parseBody(jsonBytes)
        entries = try RegisterMessages.entries("entries", in: &body, maximumCount: maximumEntries)
        requested = try RegisterMessages.names("requested", in: &body, maximumCount: maximumEntries)
        rejected = try RegisterMessages.names("rejected", in: &body, maximumCount: maximumEntries)
        try body.finish()
    }
}

/// Decoding helpers shared by the register messages.
enum RegisterMessages {
    static func entries(_ key: String, in body: inout JSONObjectReader, maximumCount: Int) throws(RequestError) -> [GlobalRegisterEntry] {
        var entries: [GlobalRegisterEntry] = []
        for (index, element) in try body.array(key, maximumCount: maximumCount).enumerated() {
            entries.append(try GlobalRegisterEntry(reading: JSONObjectReader(element, path: "\(body.path(of: key))[\(index)]")))
        }
        return entries
    }

    static func names(_ key: String, in body: inout JSONObjectReader, maximumCount: Int) throws(RequestError) -> [String] {
        var names: [String] = []
        for (index, element) in try body.array(key, maximumCount: maximumCount).enumerated() {
            guard case .string(let name) = element, GlobalRegisterEntry.isValidName(name) else {
                throw RequestError(
                    .invalidValue, field: "\(body.path(of: key))[\(index)]",
                    detail: "must be a register name (\(GlobalRegisterEntry.nameRule)), got \(element.typeName)")
            }
            names.append(name)
        }
        return names
    }
}
