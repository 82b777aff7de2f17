/// A tenant's quota audit as one region reports it: the record from the
/// store and the region's local chunk and counters.
public struct QuotaStatus: Sendable {
    public let tenant: TenantID
    /// The region that produced the status.
    public let region: String
    public let record: QuotaRecord
    /// The record's modRevision.
    public let revision: Int64
    /// False when the store could not be reached and `record` is this
    /// region's last copy.
    public let storeReachable: Bool
    /// Every region's live quota lease, nil when unknown.
    public let liveLeases: [String: LeaseID]?
    /// This region's local view, nil when it has not served the tenant.
    public let regionView: QuotaRegionView?
    public let nowMilliseconds: Int64

    /// Tokens granted beyond the limit by the chunk accounting: the record's
    /// excess plus this region's local excess. Always 0 unless there is a bug.
    /// Fail-open admissions are reported separately, not here.
    public var overspend: Int64 { record.overspend + (regionView?.localOverspend ?? 0) }

    public var json: JSONValue {
        let policy = record.policy
        var chunks: [String: JSONValue] = [:]
        for (owner, entry) in record.chunks {
            var fields: [String: JSONValue] = ["chunk": .integer(entry.chunk), "size": .integer(entry.size)]
            if let liveLeases { fields["leaseLive"] = .bool(liveLeases[owner] == entry.lease) }
            chunks[owner] = .object(fields)
        }
        let reclaimed = record.reclaimed.sorted { $0.key < $1.key }.map { chunk, entry -> JSONValue in
            .object(["chunk": .integer(chunk), "region": .string(entry.region), "amount": .integer(entry.amount)])
        }

        var fields: [String: JSONValue] = [
            "tenant": .string(tenant.rawValue),
            "region": .string(region),
            "storeReachable": .bool(storeReachable),
            "revision": .integer(revision),
            "policy": .object([
                "limit": .integer(policy.limit),
                "periodSeconds": .integer(policy.periodSeconds),
                "failMode": .string(policy.failMode.rawValue),
                "failOpenBound": .integer(policy.failOpenBound),
            ]),
            "period": .object([
                "index": .integer(record.period),
                "startsAt": .integer(policy.periodStartMilliseconds(record.period)),
                "endsAt": .integer(policy.periodStartMilliseconds(record.period + 1)),
            ]),
            "limit": .integer(policy.limit),
            "consumed": .integer(record.consumed),
            "outstanding": .integer(record.outstanding),
            "remaining": .integer(record.free),
            "chunks": .object(chunks),
            "reclaimed": .array(reclaimed),
            "failOpen": .object([
                "usedReported": .integer(record.failOpenUsed),
                "overLimit": .integer(record.failOpenOverLimit),
                "admittedHereThisPeriod": .integer(regionView?.failOpenAdmittedThisPeriod ?? 0),
                "admittedHereTotal": .integer(regionView?.counters.failOpenAdmittedTokens ?? 0),
            ]),
            "overspend": .integer(overspend),
        ]
        if let regionView {
            fields["local"] = Self.json(regionView)
        }
        return .object(fields)
    }

    private static func json(_ view: QuotaRegionView) -> JSONValue {
        let counters = view.counters
        var denied: [String: JSONValue] = [:]
        for reason in DenialReason.allCases {
            denied[reason.rawValue] = .integer(Int64(counters.denied[reason, default: 0]))
        }
        var fields: [String: JSONValue] = [
            "granted": .integer(Int64(counters.granted)),
            "grantedTokens": .integer(counters.grantedTokens),
            "denied": .object(denied),
            "servedFromChunk": .integer(Int64(counters.servedFromChunk)),
            "servedFromStore": .integer(Int64(counters.servedFromStore)),
            "servedFailOpen": .integer(Int64(counters.servedFailOpen)),
            "chunkShare": .number(counters.chunkShare),
            "committed": .integer(Int64(counters.committed)),
            "released": .integer(Int64(counters.released)),
            "expired": .integer(Int64(counters.expired)),
            "heldReservations": .integer(Int64(view.heldReservations)),
            "recordWrites": .integer(Int64(counters.writes)),
            "reclaimedChunks": .integer(Int64(counters.reclaimedChunks)),
            "creditedTokens": .integer(counters.creditedTokens),
            "demandTokensPerSecond": .number(view.demandTokensPerSecond),
            "writeInDoubt": .bool(view.writeInDoubt),
        ]
        if let chunk = view.chunk {
            fields["chunk"] = .object([
                "chunk": .integer(chunk.id),
                "size": .integer(chunk.size),
                "available": .integer(chunk.available),
                "reserved": .integer(chunk.reserved),
                "unreported": .integer(chunk.unreported.values.reduce(0, +) + chunk.reporting.values.reduce(0, +)),
                "lease": .integer(chunk.lease.rawValue),
            ])
        }
        return .object(fields)
    }
}
