/// The outcome of one reconcile-forward run.
public struct ReconcileReport: Sendable, Equatable {
    /// The region that took over and received the tails.
    public var to: String
    /// Sessions the returning region held and shipped.
    public var sessions = 0
    /// Records (turns, ledger entries, values) in the tails shipped.
    public var recordsShipped = 0
    /// Records that changed at the new home; 0 when its copies were complete.
    public var recordsMerged = 0
    /// Requests sent to the new home.
    public var requests = 0
}

/// The returning region's side of reconcile-forward. It requests, from the
/// region that took it over, the position that region has of each session.
/// Then it ships every record written after that position, and empties its
/// own store so that it never serves those sessions again.
///
/// Safe to run again after a crash half-way: the new home's merge is
/// idempotent, and the local store is emptied only after every tail was
/// merged.
struct ReconcileForward {
    static let positionsPath = "/internal/v1/reconcile/positions"
    static let tailsPath = "/internal/v1/reconcile/tails"
    /// Sessions per positions request.
    static let sessionsPerRequest = 512
    /// A tails request is sent once its records reach this many bytes (one
    /// large session may pass it alone).
    static let bytesPerRequest = 4 << 20

    let region: String
    /// Sessions per positions request and at most per tails request (at
    /// most `sessionsPerRequest`); the fault harness lowers it to split a
    /// reconcile into several requests.
    var sessionsPerChunk = Self.sessionsPerRequest
    let store: any SessionStore
    let peers: any InterRegionTransport
    let keyRing: TokenKeyRing

    /// Ships every local session's tail to `newHome` and empties the store.
    ///
    /// - Throws: `ReconcileError` when `newHome` refuses or cannot be reached,
    ///   `SessionStoreError` when the local store fails. Nothing is removed
    ///   locally then; the caller runs it again.
    func run(to newHome: String) async throws -> ReconcileReport {
        var report = ReconcileReport(to: newHome)
        let ids = try await store.sessionIDs()

        var start = 0
        while start < ids.count {
            let chunk = Array(ids[start..<min(ids.count, start + sessionsPerChunk)])
            start += chunk.count
            let positions = try await fetchPositions(of: chunk, from: newHome)
            report.requests += 1

            var tails: [ReconcileTail] = []
            var bytes = 0
            for id in chunk {
                let state = try await store.replicatedState(id)
                // A position from an older epoch covers none of this epoch's records.
                let held = positions[id].flatMap { $0.epoch == state.info.lastStamp.epoch ? $0.seq : nil } ?? 0
                let tail = ReconcileTail(state, sinceSeq: min(held, state.info.lastStamp.seq))
                tails.append(tail)
                bytes += tail.turns.reduce(256) { $0 + $1.content.utf8.count + 256 } + tail.ledger.count * 512 + tail.values.count * 512
                if bytes >= Self.bytesPerRequest || tails.count >= sessionsPerChunk {
                    report.recordsMerged += try await ship(tails, to: newHome)
                    report.requests += 1
                    report.sessions += tails.count
                    report.recordsShipped += tails.reduce(0) { $0 + $1.recordCount }
                    tails = []
                    bytes = 0
                }
            }
            if !tails.isEmpty {
                report.recordsMerged += try await ship(tails, to: newHome)
                report.requests += 1
                report.sessions += tails.count
                report.recordsShipped += tails.reduce(0) { $0 + $1.recordCount }
            }
        }

        try await store.removeAllSessions()
        return report
    }

    private func fetchPositions(of ids: [SessionID], from newHome: String) async throws -> [SessionID: SessionStamp] {
        let body = JSONValue.object(["sessions": .array(ids.map { .string($0.rawValue) })])
        let answer = try await post(body, to: Self.positionsPath, at: newHome)

        guard case .object(let positions)? = answer["positions"] else {
            throw ReconcileError(.peerFailed, region: newHome, "the positions response has no \"positions\" object")
        }
        var result: [SessionID: SessionStamp] = [:]
        for (name, value) in positions {
            guard let id = SessionID(name), let epoch = value["epoch"]?.integerValue, let seq = value["seq"]?.integerValue,
                epoch >= 0, seq >= 0
            else {
                throw ReconcileError(
                    .peerFailed, region: newHome, "the positions response contains an invalid entry for \"\(name.prefix(80))\"")
            }
            result[id] = SessionStamp(epoch: UInt64(epoch), seq: UInt64(seq))
        }
        return result
    }

    /// Sends tails and returns how many records changed at the new home.
    private func ship(_ tails: [ReconcileTail], to newHome: String) async throws -> Int {
        let answer = try await post(.object(["tails": .array(tails.map(\.json))]), to: Self.tailsPath, at: newHome)
        guard let merged = answer["merged"]?.integerValue, merged >= 0 else {
            throw ReconcileError(.peerFailed, region: newHome, "the tails response has no \"merged\" count")
        }
        return Int(merged)
    }

    private func post(_ body: JSONValue, to path: String, at newHome: String) async throws -> JSONValue {
        let bytes = body.serializedBytes()
        var request = HTTPRequest(method: "POST", path: path, body: bytes)
        request.headers["content-type"] = "application/json"
        let headers = [(PeerSignature.header, PeerSignature.sign(bytes, with: keyRing)), (RegionNode.forwardedFromHeader, region)]

        let response = try await peers.send(request, from: region, to: newHome, extraHeaders: headers)
        guard response.status == 200 else {
            throw ReconcileError(
                .peerFailed, region: newHome,
                "\(path) returned \(response.status): \(String(decoding: response.body.prefix(300), as: UTF8.self))")
        }
        do {
            return try JSONValue.parse(response.body)
        } catch {
            throw ReconcileError(.peerFailed, region: newHome, "\(path) returned invalid JSON: \(error)")
        }
    }
}
