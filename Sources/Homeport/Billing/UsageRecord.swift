/// One request's usage, as a serving node reports it for billing.
///
/// A record carries one token count: the tokens the request consumed, prompt
/// and completion together. The totals the store keeps are per tenant, so a
/// split between prompt and completion tokens would not reach them.
///
/// The request id is the idempotency key: a region counts each
/// `(tenant, requestID)` once, and the store counts it once across regions
/// within the dedup window (see `BillingRecorder`).
public struct UsageRecord: Sendable, Equatable {
    /// Largest token count one record may carry.
    public static let maximumTokens: Int64 = 10_000_000
    public static let maximumRequestIDBytes = 128
    public static let maximumModelBytes = 128

    public static let requestIDRule = "1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-', other than . and .."
    public static let modelRule = "1 to 128 printable ASCII characters without spaces"

    public let tenant: TenantID
    /// The request's id, which is part of a store key, so its characters are
    /// restricted to `requestIDRule`.
    public let requestID: String
    /// The model that served the request, kept with the record and compared
    /// on duplicates, but not summed separately.
    public let model: String?
    /// Tokens consumed, from 0 to `maximumTokens`.
    public let tokens: Int64

    /// Creates a record after checking each field.
    ///
    /// - Throws: `BillingError` with code `invalidRecord` naming the field
    ///   (`requestId`, `tokens` or `model`) and the rule it breaks.
    public init(tenant: TenantID, requestID: String, model: String? = nil, tokens: Int64) throws(BillingError) {
        guard Self.isValidRequestID(requestID) else {
            throw BillingError(
                .invalidRecord, field: "requestId",
                "request id \"\(requestID.prefix(80))\" is invalid; it must be \(Self.requestIDRule)")
        }
        guard (0...Self.maximumTokens).contains(tokens) else {
            throw BillingError(
                .invalidRecord, field: "tokens",
                "tokens must be from 0 to \(Self.maximumTokens), got \(tokens)")
        }
        if let model {
            guard Self.isValidModel(model) else {
                throw BillingError(
                    .invalidRecord, field: "model",
                    "model \"\(model.prefix(80))\" is invalid; it must be \(Self.modelRule)")
            }
        }

        self.tenant = tenant
        self.requestID = requestID
        self.model = model
        self.tokens = tokens
    }

    /// True when `text` follows `requestIDRule`, so it cannot add a level to
    /// a store key or escape its prefix.
    public static func isValidRequestID(_ text: String) -> Bool {
        let bytes = text.utf8
        guard (1...maximumRequestIDBytes).contains(bytes.count), text != ".", text != ".." else { return false }
        return bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"),
                UInt8(ascii: "-"):
                true
            default:
                false
            }
        }
    }

    public static func isValidModel(_ text: String) -> Bool {
        let bytes = text.utf8
        guard (1...maximumModelBytes).contains(bytes.count) else { return false }
        return bytes.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }

    /// True when `other` reports the same usage: the same tokens and model.
    /// The tenant and request id are compared by the caller's lookup.
    func hasSameUsage(as other: UsageRecord) -> Bool {
        tokens == other.tokens && model == other.model
    }

    /// The key a region deduplicates by.
    var identity: UsageRecordIdentity {
        UsageRecordIdentity(tenant: tenant, requestID: requestID)
    }
}

/// A record's idempotency key: its tenant and request id.
public struct UsageRecordIdentity: Hashable, Sendable {
    public let tenant: TenantID
    public let requestID: String
}
