import CCrypto

/// Records of one tenant that a region flushes to the store in one
/// transaction, under an id derived from their contents.
///
/// Batch id scheme: the first 16 bytes of SHA-256, in lowercase hex, over
/// the line `homeport-billing-batch-v1`, the tenant, then one line per record
/// in request id order with its request id, tokens and model. The same
/// records give the same id in any region and after any restart, so a batch
/// sent twice finds its own marker. Records regrouped into another batch get
/// another id, which is why the store also keeps one key per committed
/// request id (see `BillingRecorder`).
public struct BillingBatch: Sendable, Equatable {
    /// 32 lowercase hex characters.
    public struct ID: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public var description: String { rawValue }
    }

    public let tenant: TenantID
    /// The records, ordered by request id, with distinct request ids.
    public let records: [UsageRecord]
    public let id: ID
    /// The sum of the records' tokens.
    public let tokens: Int64

    /// Creates a batch of `records`, which must all belong to `tenant` and
    /// have distinct request ids.
    init(tenant: TenantID, records: [UsageRecord]) {
        precondition(records.allSatisfy { $0.tenant == tenant }, "a billing batch contains the records of one tenant")
        let sorted = records.sorted { $0.requestID.utf8.lexicographicallyPrecedes($1.requestID.utf8) }
        precondition(zip(sorted, sorted.dropFirst()).allSatisfy { $0.requestID != $1.requestID }, "request ids in a batch are distinct")

        self.tenant = tenant
        self.records = sorted
        self.id = Self.batchID(tenant: tenant, sortedRecords: sorted)
        // At most `maximumRecordsPerBatch` records of at most 10^7 tokens each, far from overflow.
        self.tokens = sorted.reduce(0) { $0 + $1.tokens }
    }

    /// Returns this batch without the records whose request ids are in
    /// `requestIDs`, under the id of what remains, or nil when nothing remains.
    func removing(_ requestIDs: Set<String>) -> BillingBatch? {
        let remaining = records.filter { !requestIDs.contains($0.requestID) }
        guard !remaining.isEmpty else { return nil }
        return BillingBatch(tenant: tenant, records: remaining)
    }

    private static func batchID(tenant: TenantID, sortedRecords: [UsageRecord]) -> ID {
        // Request ids and models contain neither spaces nor newlines, and a
        // model is never empty, so this text names one set of records.
        var text = "homeport-billing-batch-v1\n\(tenant.rawValue)\n"
        for record in sortedRecords {
            text += "\(record.requestID) \(record.tokens) \(record.model ?? "")\n"
        }

        let digest = sha256(Array(text.utf8))
        let hexDigits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        for byte in digest.prefix(16) {
            hex.append(hexDigits[Int(byte >> 4)])
            hex.append(hexDigits[Int(byte & 0x0F)])
        }
        return ID(rawValue: String(decoding: hex, as: UTF8.self))
    }

    /// Computes SHA-256 (FIPS 180-4) with libcrypto's one-shot `EVP_Digest`.
    private static func sha256(_ message: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: 32)
        var outputLength: UInt32 = 0
        let status = message.withUnsafeBytes { messageBuffer in
            output.withUnsafeMutableBytes { outputBuffer in
                EVP_Digest(
                    messageBuffer.baseAddress, messageBuffer.count,
                    outputBuffer.baseAddress?.assumingMemoryBound(to: UInt8.self), &outputLength, EVP_sha256(), nil)
            }
        }
        // EVP_Digest fails only when it cannot allocate its context.
        precondition(status == 1 && outputLength == 32, "libcrypto SHA-256 failed")
        return output
    }
}
