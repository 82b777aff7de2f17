/// One global register: a named JSON value and the stamp of the write that
/// set it.
///
/// Wire and API form:
/// `{"name": "router-weights", "value": <any JSON>, "stamp": {"physicalMilliseconds": 1800000000000, "logical": 0, "region": "us-east"}}`.
public struct GlobalRegisterEntry: Sendable, Equatable {
    public var name: String
    public var value: JSONValue
    public var stamp: RegisterStamp

    public init(name: String, value: JSONValue, stamp: RegisterStamp) {
        self.name = name
        self.value = value
        self.stamp = stamp
    }

    /// Register names: 1 to 128 characters of `A-Z a-z 0-9 . _ : -`, safe in
    /// a URL path segment.
    public static func isValidName(_ name: String) -> Bool {
        APIRoute.isValidEntryName(name)
    }

    public static let nameRule = APIRoute.entryNameRule

    /// The size of the value as the wire carries it, which the value limit bounds.
    public var valueBytes: Int { value.serializedBytes().count }

    public var json: JSONValue {
        .object(["name": .string(name), "value": value, "stamp": stamp.json])
    }

    /// Decodes an entry. The value's size is checked by the table it is merged
    /// into, not here.
    /// - Throws: `RequestError` naming the field at fault by its full path.
    init(reading object: JSONObjectReader) throws(RequestError) {
        var object = object
        let name = try object.string("name", maximumBytes: 128)
        guard Self.isValidName(name) else {
            throw object.invalidValue("name", "is \"\(name.prefix(80))\", but a register name is \(Self.nameRule)")
        }
        let value = try object.value("value")
        let stamp = try RegisterStamp(reading: object.object("stamp"))
        try object.finish()
        self.init(name: name, value: value, stamp: stamp)
    }
}

extension RegisterStamp {
    public var json: JSONValue {
        .object([
            "physicalMilliseconds": .integer(timestamp.physicalMilliseconds),
            "logical": .integer(Int64(timestamp.logical)),
            "region": .string(region),
        ])
    }

    /// Decodes a stamp; the region must be a valid region name.
    /// - Throws: `RequestError` naming the field at fault by its full path.
    init(reading object: JSONObjectReader) throws(RequestError) {
        var object = object
        let physical = try object.integer("physicalMilliseconds", in: 0...Int64.max)
        let logical = try object.integer("logical", in: 0...Int64(UInt32.max))
        let region = try object.string("region", maximumBytes: 32)
        guard RegionTopology.isValidName(region) else {
            throw object.invalidValue(
                "region", "is \"\(region)\", but a region name is 1 to 32 characters of a-z, 0-9 and '-', starting with a letter")
        }
        try object.finish()
        self.init(timestamp: HybridTimestamp(physicalMilliseconds: physical, logical: UInt32(logical)), region: region)
    }
}
