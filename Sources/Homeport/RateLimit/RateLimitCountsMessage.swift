/// `POST /internal/v1/rate-limits/counts`, and its reply: the counts of
/// every live window a region has, for every region.
///
/// `{"windows": [{"tenant": "acme", "windowSeconds": 60, "windowStart": 1800000000000, "counts": {"us-east": 12, "eu-west": 3}}]}`
///
/// `windowStart` is in milliseconds since the Unix epoch and a multiple of
/// the window length. Both sides merge what they receive by maximum, so a
/// lost or repeated message changes nothing that the next one does not fix.
struct RateLimitCountsMessage: Sendable, Equatable {
    /// The maximum number of regions one window may name.
    static let maximumRegions = 256
    /// The largest count accepted for one region in one window.
    static let maximumCount: Int64 = 1_000_000_000_000

    var windows: [RateLimitWindowCounts]

    init(windows: [RateLimitWindowCounts]) {
        self.windows = windows
    }

    var json: JSONValue {
        .object([
            "windows": .array(
                windows.map { counts in
                    .object([
                        "tenant": .string(counts.window.tenant.rawValue),
                        "windowSeconds": .integer(counts.window.windowSeconds),
                        "windowStart": .integer(counts.window.startMilliseconds),
                        "counts": .object(counts.counts.mapValues(JSONValue.integer)),
                    ])
                })
        ])
    }

    /// - Throws: `RequestError` naming the field at fault, such as `windows[1].counts.us-east`.
    init(jsonBytes: [UInt8], maximumWindows: Int) throws(RequestError) {
        var body = try JSONObjectReader.parseBody(jsonBytes)
        var windows: [RateLimitWindowCounts] = []
        for (index, element) in try body.array("windows", maximumCount: maximumWindows).enumerated() {
            windows.append(try Self.windowCounts(JSONObjectReader(element, path: "windows[\(index)]")))
        }
        try body.finish()
        self.windows = windows
    }

    private static func windowCounts(_ object: JSONObjectReader) throws(RequestError) -> RateLimitWindowCounts {
        var object = object
        let tenantText = try object.string("tenant", maximumBytes: 64)
        guard let tenant = TenantID(tenantText) else {
            throw object.invalidValue("tenant", "is not a tenant id (\(TenantID.allowedCharactersDescription))")
        }
        let seconds = try object.integer("windowSeconds", in: RateLimitSetting.windowSecondsRange)
        let start = try object.integer("windowStart", in: 0...Int64.max / 2)
        guard start % (seconds * 1000) == 0 else {
            throw object.invalidValue("windowStart", "is \(start), which is not a multiple of the window length (\(seconds * 1000) ms)")
        }

        var countsObject = try object.object("counts")
        guard countsObject.keys.count <= maximumRegions else {
            throw object.invalidValue("counts", "names \(countsObject.keys.count) regions; the maximum is \(maximumRegions)")
        }
        var counts: [String: Int64] = [:]
        for region in countsObject.keys {
            guard RegionTopology.isValidName(region) else {
                throw RequestError(
                    .invalidValue, field: countsObject.path(of: region), detail: "\"\(region.prefix(40))\" is not a region name")
            }
            counts[region] = try countsObject.integer(region, in: 0...maximumCount)
        }
        try countsObject.finish()
        try object.finish()

        let window = RateLimitWindow(tenant: tenant, windowSeconds: seconds, startMilliseconds: start)
        return RateLimitWindowCounts(window: window, counts: counts)
    }
}
