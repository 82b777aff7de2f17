import Foundation

/// The JSON that etcd's v3 gateway reads and writes, for the calls that
/// `EtcdLinearizableStore` makes.
///
/// The gateway (gRPC-gateway, paths under `/v3/` since etcd 3.4) follows the
/// protobuf JSON mapping. As seen with etcd 3.4.23:
/// - `bytes` fields (keys, values, range ends) are standard base64 with padding.
/// - `int64` fields (revisions, versions, lease ids, TTLs) are decimal strings.
/// - A field at its zero value (0, false, empty) is left out of a response:
///   a failed transaction has no `succeeded`, an empty value no `value`, a key
///   without a lease no `lease`. A missing field therefore reads as zero.
/// - Response fields carry their proto names (`create_revision`,
///   `response_range`, `ID`, `TTL`, `grantedTTL`).
/// - Enums are written by name, such as compare target `MOD` and result `EQUAL`.
enum EtcdGatewayJSON {
    // MARK: Requests

    static func bytes(_ bytes: [UInt8]) -> JSONValue {
        .string(Data(bytes).base64EncodedString())
    }

    static func key(_ key: String) -> JSONValue {
        bytes(Array(key.utf8))
    }

    /// Encodes an `int64` field as a decimal string, as the gateway writes it.
    static func number(_ value: Int64) -> JSONValue {
        .string(String(value))
    }

    /// Returns the body of a linearizable range over one key.
    static func rangeRequest(key: String) -> JSONValue {
        .object(["key": Self.key(key)])
    }

    /// Returns the body of a linearizable range over every key that starts with `prefix`.
    ///
    /// etcd reads `[key, range_end)`, so the end is the prefix plus one. The
    /// empty prefix becomes key and range end `\0`, which etcd reads as every key.
    static func prefixRangeRequest(prefix: String) -> JSONValue {
        let start = Array(prefix.utf8)
        guard !start.isEmpty else {
            return .object(["key": bytes([0]), "range_end": bytes([0])])
        }
        return .object(["key": bytes(start), "range_end": bytes(rangeEnd(ofPrefix: start))])
    }

    /// Returns the smallest key greater than every key that starts with
    /// `prefix`: the prefix with trailing 0xFF bytes dropped and its last byte
    /// raised by one. A prefix of only 0xFF bytes has no such key, so it
    /// returns `\0`, which etcd reads as "every key from the start key on".
    static func rangeEnd(ofPrefix prefix: [UInt8]) -> [UInt8] {
        var end = prefix
        while let last = end.last {
            if last < 0xFF {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]
    }

    /// Encodes one compare of a transaction request.
    ///
    /// `exists` is "create revision greater than 0" and `absent` is "version
    /// equal to 0", because etcd compares an absent key as one whose
    /// revisions and version are all 0.
    static func compare(_ compare: TransactionCompare) -> JSONValue {
        let target: String
        let result: String
        let operand: (field: String, value: JSONValue)
        switch compare {
        case .exists:
            (target, result, operand) = ("CREATE", "GREATER", ("create_revision", number(0)))
        case .absent:
            (target, result, operand) = ("VERSION", "EQUAL", ("version", number(0)))
        case .modRevision(_, let expected):
            (target, result, operand) = ("MOD", "EQUAL", ("mod_revision", number(expected)))
        case .value(_, let expected):
            (target, result, operand) = ("VALUE", "EQUAL", ("value", bytes(expected)))
        case .version(_, let expected):
            (target, result, operand) = ("VERSION", "EQUAL", ("version", number(expected)))
        case .versionLess(_, let bound):
            (target, result, operand) = ("VERSION", "LESS", ("version", number(bound)))
        }
        return .object(["key": key(compare.key), "target": .string(target), "result": .string(result), operand.field: operand.value])
    }

    /// Returns the body of a put. Lease 0 is etcd's "no lease".
    static func putRequest(key: String, value: [UInt8], lease: LeaseID?) -> JSONValue {
        .object(["key": Self.key(key), "value": bytes(value), "lease": number(lease?.rawValue ?? 0)])
    }

    /// Returns the body of a delete of one key that asks for the deleted key back.
    static func deleteRequest(key: String) -> JSONValue {
        .object(["key": Self.key(key), "prev_kv": .bool(true)])
    }

    /// Encodes one operation of a transaction branch.
    static func operation(_ operation: TransactionOperation) -> JSONValue {
        switch operation {
        case .put(let key, let value, let lease):
            return .object(["request_put": putRequest(key: key, value: value, lease: lease)])
        case .delete(let key):
            return .object(["request_delete_range": deleteRequest(key: key)])
        case .get(let key):
            return .object(["request_range": rangeRequest(key: key)])
        case .range(let range):
            return .object(["request_range": rangeRequest(range)])
        }
    }

    /// Returns the body of a range over the keys of `range`: from its start
    /// (or prefix) to the end of the prefix, sorted by key when descending,
    /// and cut to its limit.
    static func rangeRequest(_ range: KeyRange) -> JSONValue {
        // A range end of "\0" means "to the last key", which is where an
        // empty prefix ends; key "\0" is the first key there is.
        let prefix = Array(range.prefix.utf8)
        let start = range.start.map { Array($0.utf8) } ?? (prefix.isEmpty ? [0] : prefix)
        let end = prefix.isEmpty ? [0] : rangeEnd(ofPrefix: prefix)
        var fields: [String: JSONValue] = ["key": bytes(start), "range_end": bytes(end)]
        if let limit = range.limit {
            fields["limit"] = number(Int64(limit))
        }
        if range.descending {
            fields["sort_order"] = .string("DESCEND")
            fields["sort_target"] = .string("KEY")
        }
        return .object(fields)
    }

    static func transactionRequest(
        compares: [TransactionCompare], success: [TransactionOperation], failure: [TransactionOperation]
    ) -> JSONValue {
        .object([
            "compare": .array(compares.map(compare)),
            "success": .array(success.map(operation)),
            "failure": .array(failure.map(operation)),
        ])
    }

    // MARK: Responses

    /// Returns the store revision from the response header.
    static func revision(of response: EtcdResponseObject) throws(EtcdResponseError) -> Int64 {
        guard let header = try response.object("header") else {
            throw EtcdResponseError("the response has no header")
        }
        let revision = try header.int64("revision")
        guard revision >= 1 else {
            throw EtcdResponseError("header.revision is \(revision), but an etcd revision is at least 1")
        }
        return revision
    }

    /// Returns the keys of a range response, in the order etcd sent them.
    static func keyValues(of response: EtcdResponseObject) throws(EtcdResponseError) -> [KeyValue] {
        var keyValues: [KeyValue] = []
        for object in try response.objects("kvs") {
            keyValues.append(try keyValue(object))
        }
        return keyValues
    }

    /// Returns the single key of a range over one key, or nil when it is absent.
    static func singleKeyValue(of response: EtcdResponseObject, field: String = "kvs") throws(EtcdResponseError) -> KeyValue? {
        let objects = try response.objects(field)
        guard objects.count <= 1 else {
            throw EtcdResponseError("\(response.path(of: field)) has \(objects.count) entries for a request about one key")
        }
        return try objects.first.map { object throws(EtcdResponseError) in try keyValue(object) }
    }

    /// Reads one `mvccpb.KeyValue`. etcd never returns a key with a zero
    /// create revision, modification revision or version, so a missing one
    /// means the response is damaged.
    static func keyValue(_ object: EtcdResponseObject) throws(EtcdResponseError) -> KeyValue {
        let key = try object.utf8String("key")
        guard !key.isEmpty else {
            throw EtcdResponseError("\(object.path(of: "key")) is missing or empty")
        }

        let createRevision = try object.int64("create_revision")
        let modRevision = try object.int64("mod_revision")
        let version = try object.int64("version")
        for (name, number) in [("create_revision", createRevision), ("mod_revision", modRevision), ("version", version)] {
            guard number >= 1 else {
                throw EtcdResponseError("\(object.path(of: name)) of key \(quotedKey(key)) is \(number), but it must be at least 1")
            }
        }

        let lease = try object.int64("lease")
        return KeyValue(
            key: key, value: try object.bytes("value"), createRevision: createRevision, modRevision: modRevision, version: version,
            lease: lease == 0 ? nil : LeaseID(rawValue: lease))
    }

    /// Returns the result of each operation of the branch that ran, checking
    /// that the responses match the operations one to one.
    static func operationResults(
        of response: EtcdResponseObject, branch: [TransactionOperation], revision: Int64
    ) throws(EtcdResponseError) -> [TransactionOperationResult] {
        let responses = try response.objects("responses")
        guard responses.count == branch.count else {
            throw EtcdResponseError("responses has \(responses.count) entries for a branch of \(branch.count) operations")
        }

        var results: [TransactionOperationResult] = []
        for (operation, entry) in zip(branch, responses) {
            switch operation {
            case .put:
                _ = try entry.requiredObject("response_put")
                results.append(.put(revision: revision))
            case .delete:
                let deleted = try entry.requiredObject("response_delete_range")
                results.append(.delete(previous: try singleKeyValue(of: deleted, field: "prev_kvs")))
            case .get:
                let read = try entry.requiredObject("response_range")
                results.append(.get(try singleKeyValue(of: read)))
            case .range(let range):
                let read = try entry.requiredObject("response_range")
                let keyValues = try keyValues(of: read)
                if let limit = range.limit, keyValues.count > limit {
                    throw EtcdResponseError("\(read.path(of: "kvs")) has \(keyValues.count) entries for a range limited to \(limit)")
                }
                results.append(.range(keyValues))
            }
        }
        return results
    }

    /// Returns the keys of a lease time-to-live response, ordered by their
    /// bytes: etcd lists them in no particular order.
    static func leaseKeys(of response: EtcdResponseObject) throws(EtcdResponseError) -> [String] {
        var keys: [(bytes: [UInt8], text: String)] = []
        guard let entries = response.fields["keys"] else { return [] }
        guard case .array(let elements) = entries else {
            throw EtcdResponseError("\(response.path(of: "keys")) is \(entries.typeName), but it should be an array")
        }
        for (index, element) in elements.enumerated() {
            let path = "\(response.path(of: "keys"))[\(index)]"
            let bytes = try EtcdResponseObject.decodeBase64(element, path: path)
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw EtcdResponseError("\(path) is not valid UTF-8, so it is not a key this store wrote")
            }
            keys.append((bytes, text))
        }
        return keys.sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }.map(\.text)
    }

    /// Returns the gRPC code and message of a gateway error body, which comes
    /// with a non-200 status.
    ///
    /// A unary call returns `{"error": "...", "message": "...", "code": 5}`
    /// and a streaming call `{"error": {"grpc_code": 5, "message": "..."}}`.
    /// `code` is the gRPC status code. Returns nil for any other body, such as
    /// the plain text "Not Found" of an unknown path.
    static func gatewayError(in body: [UInt8]) -> (code: Int, message: String)? {
        guard let value = try? JSONValue.parse(body) else { return nil }
        return gatewayError(in: value)
    }

    static func gatewayError(in value: JSONValue) -> (code: Int, message: String)? {
        if let code = value["code"]?.integerValue {
            let message = value["message"]?.stringValue ?? value["error"]?.stringValue ?? ""
            return (Int(code), message)
        }
        if let nested = value["error"], let code = nested["grpc_code"]?.integerValue {
            return (Int(code), nested["message"]?.stringValue ?? "")
        }
        return nil
    }
}

/// A response from the gateway that does not have the expected shape. The
/// reason names the field, such as `kvs[0].value`.
struct EtcdResponseError: Error, CustomStringConvertible {
    let reason: String

    init(_ reason: String) {
        self.reason = reason
    }

    var description: String { reason }
}

/// A JSON object of a gateway response, read field by field.
///
/// A missing field reads as its zero value, because the gateway leaves zero
/// values out. A field of the wrong type, a number that is not a 64-bit
/// integer, or text that is not base64 throws an error naming the field's path.
struct EtcdResponseObject {
    let fields: [String: JSONValue]
    /// The object's place in the response, such as `responses[2].response_range`. Empty at the top.
    let path: String

    init(_ value: JSONValue, path: String = "") throws(EtcdResponseError) {
        guard case .object(let fields) = value else {
            throw EtcdResponseError("\(path.isEmpty ? "the response" : path) is \(value.typeName), but it should be an object")
        }
        self.fields = fields
        self.path = path
    }

    /// Parses a whole response body.
    init(body: [UInt8]) throws(EtcdResponseError) {
        let value: JSONValue
        do {
            value = try JSONValue.parse(body)
        } catch {
            throw EtcdResponseError("the body is not valid JSON (\(error)): \(Self.excerpt(body))")
        }
        try self.init(value)
    }

    func path(of name: String) -> String {
        path.isEmpty ? name : "\(path).\(name)"
    }

    /// Reads an `int64` field, which the gateway writes as a decimal string.
    /// A JSON integer is accepted too. A missing field is 0.
    func int64(_ name: String) throws(EtcdResponseError) -> Int64 {
        switch fields[name] {
        case nil:
            return 0
        case .integer(let number)?:
            return number
        case .string(let text)?:
            guard let number = Int64(text) else {
                throw EtcdResponseError("\(path(of: name)) is \"\(text.prefix(40))\", which is not a 64-bit integer")
            }
            return number
        case let other?:
            throw EtcdResponseError("\(path(of: name)) is \(other.typeName), but it should be a string of digits")
        }
    }

    /// Reads a boolean field. A missing field is false.
    func bool(_ name: String) throws(EtcdResponseError) -> Bool {
        guard let value = fields[name] else { return false }
        guard case .bool(let flag) = value else {
            throw EtcdResponseError("\(path(of: name)) is \(value.typeName), but it should be a boolean")
        }
        return flag
    }

    /// Reads a `bytes` field, which is base64 text. A missing field is empty.
    func bytes(_ name: String) throws(EtcdResponseError) -> [UInt8] {
        guard let value = fields[name] else { return [] }
        return try Self.decodeBase64(value, path: path(of: name))
    }

    /// Reads a `bytes` field that contains UTF-8 text, such as a key.
    func utf8String(_ name: String) throws(EtcdResponseError) -> String {
        let bytes = try bytes(name)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw EtcdResponseError("\(path(of: name)) is not valid UTF-8, so it is not a key this store wrote")
        }
        return text
    }

    /// Reads an object field, or returns nil when it is missing.
    func object(_ name: String) throws(EtcdResponseError) -> EtcdResponseObject? {
        guard let value = fields[name] else { return nil }
        return try EtcdResponseObject(value, path: path(of: name))
    }

    func requiredObject(_ name: String) throws(EtcdResponseError) -> EtcdResponseObject {
        guard let object = try object(name) else {
            let present = fields.keys.sorted().joined(separator: ", ")
            throw EtcdResponseError("\(path(of: name)) is missing (the object has: \(present.isEmpty ? "no fields" : present))")
        }
        return object
    }

    /// Reads an array of objects. A missing field is an empty array.
    func objects(_ name: String) throws(EtcdResponseError) -> [EtcdResponseObject] {
        guard let value = fields[name] else { return [] }
        guard case .array(let elements) = value else {
            throw EtcdResponseError("\(path(of: name)) is \(value.typeName), but it should be an array")
        }

        var objects: [EtcdResponseObject] = []
        for (index, element) in elements.enumerated() {
            objects.append(try EtcdResponseObject(element, path: "\(path(of: name))[\(index)]"))
        }
        return objects
    }

    /// Decodes standard base64 with padding, rejecting any other text.
    static func decodeBase64(_ value: JSONValue, path: String) throws(EtcdResponseError) -> [UInt8] {
        guard case .string(let text) = value else {
            throw EtcdResponseError("\(path) is \(value.typeName), but it should be a base64 string")
        }
        guard let data = Data(base64Encoded: text) else {
            throw EtcdResponseError("\(path) is not valid base64: \"\(text.prefix(40))\"")
        }
        return Array(data)
    }

    /// Returns the start of a body, at most 120 bytes, quoted for an error message.
    static func excerpt(_ body: [UInt8]) -> String {
        let limit = 120
        let text = String(decoding: body.prefix(limit), as: UTF8.self)
        return body.count > limit ? "\"\(text)…\"" : "\"\(text)\""
    }
}
