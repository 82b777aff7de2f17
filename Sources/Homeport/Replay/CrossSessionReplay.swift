import Foundation

/// Counts of one replayed session's use of the cross-session tiers.
struct CrossSessionCounters: Sendable {
    var reservationsGranted = 0
    var reservationsDenied = 0
    /// Granted reservations served from the region's lease chunk, without a
    /// round trip to the linearizable store.
    var reservationsFromChunk = 0
    var committedTokens: Int64 = 0
    var recordedTokens: Int64 = 0
    /// Weight reads at a region that did not have them yet.
    var routerWeightsMissing = 0

    mutating func add(_ other: CrossSessionCounters) {
        reservationsGranted += other.reservationsGranted
        reservationsDenied += other.reservationsDenied
        reservationsFromChunk += other.reservationsFromChunk
        committedTokens += other.committedTokens
        recordedTokens += other.recordedTokens
        routerWeightsMissing += other.routerWeightsMissing
    }
}

/// A granted reservation, to commit once the request has run.
struct CrossSessionReservation: Sendable {
    var requestID: String
}

/// The quota, billing and router-weight results of a replay.
public struct CrossSessionOutcome: Sendable {
    public var reservationsGranted: Int
    public var reservationsDenied: Int
    public var reservationsFromChunk: Int
    /// Tokens committed against the quota after each request ran.
    public var committedTokens: Int64
    /// Tokens recorded for billing (each request once, by request id).
    public var recordedTokens: Int64
    /// The tenant's billing totals read linearizably after the replay, or nil if the read failed.
    public var billedTokens: Int64?
    public var billedRecords: Int64?
    /// Each region's quota status after the replay (its audit), by region.
    public var quotaAudits: [String: JSONValue]
    /// Seconds from the replay's start to the router-weight change.
    public var weightChangeAtSeconds: Double?
    /// Milliseconds from the change until each other region served the new
    /// weights, by region; a region missing never served them.
    public var weightConvergenceMilliseconds: [String: Double]
    /// Weight reads that returned 404 at a region that had just restarted.
    public var routerWeightsMissing = 0
}

extension TraceReplay {
    static let routerWeightsPath = "/v1/registers/router-weights"

    var quotaPath: String { "/v1/tenants/\(configuration.tenant)/quota" }

    /// Sets the tenant's quota and the first router weights, before any session starts.
    func prepareCrossSessionState(recorder: LatencyRecorder) async {
        let first = baseURLs[regions[0]]!
        do {
            _ = try await client.send(
                "PUT", baseURL: first, path: quotaPath, token: nil,
                body: .object(["limit": .integer(configuration.quotaLimit), "periodSeconds": .integer(86_400)]))
            _ = try await client.send(
                "PUT", baseURL: first, path: Self.routerWeightsPath, token: nil,
                body: .object(["value": .object(["model-a": .number(0.5), "model-b": .number(0.5)])]))
        } catch {
            recorder.recordError("prepare_cross_session", message: "\(error)")
        }

        // Start once every region serves the weights, as a deployment would.
        for region in regions {
            for _ in 0..<500 {
                let read = try? await client.send("GET", baseURL: baseURLs[region]!, path: Self.routerWeightsPath, token: nil, body: nil)
                if read != nil { break }
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    /// Reads the router weights at the entry region and reserves the
    /// request's tokens. Returns the reservation to commit, or nil when it
    /// was denied or failed.
    func beforeRequest(
        _ requestIndex: Int, tokens: Int, entry: String, recorder: LatencyRecorder, holder: SessionHolder,
        counters: inout CrossSessionCounters
    ) async -> CrossSessionReservation? {
        let baseURL = baseURLs[entry]!
        // A region that has just restarted may not have the weights yet (404):
        // a router then keeps its defaults, so that is not an error.
        let started = ContinuousClock.now
        do {
            let response = try await client.send("GET", baseURL: baseURL, path: Self.routerWeightsPath, token: nil, body: nil)
            recorder.record(
                "read_router_weights", entry: entry, servedBy: response.servedBy ?? entry,
                milliseconds: (ContinuousClock.now - started).secondsValue * 1000)
        } catch {
            if case .problem(404, _, _) = error {
                counters.routerWeightsMissing += 1
            } else {
                recorder.recordError("read_router_weights", message: error.description)
            }
        }

        let requestID = "r\(requestIndex)"
        let body: JSONValue = .object(["requestId": .string(requestID), "amount": .integer(Int64(max(1, tokens)))])
        var attempt = 0
        while true {
            attempt += 1
            let started = ContinuousClock.now
            do {
                let response = try await client.send(
                    "POST", baseURL: baseURL, path: quotaPath + "/reservations", token: nil, body: body)
                recorder.record(
                    "reserve_quota", entry: entry, servedBy: response.servedBy ?? entry,
                    milliseconds: (ContinuousClock.now - started).secondsValue * 1000)
                counters.reservationsGranted += 1
                if response.body["servedFrom"]?.stringValue == "chunk" { counters.reservationsFromChunk += 1 }
                return CrossSessionReservation(requestID: requestID)
            } catch {
                if error.isRetryable, attempt < 20 {
                    recorder.recordRetry()
                    try? await Task.sleep(for: .milliseconds(100))
                    continue
                }
                if case .problem(let status, _, _) = error, status == 429 {
                    counters.reservationsDenied += 1
                } else {
                    recorder.recordError("reserve_quota", message: error.description)
                }
                return nil
            }
        }
    }

    /// Commits the tokens the request used and records them for billing.
    func afterRequest(
        _ reservation: CrossSessionReservation, used: Int, entry: String, recorder: LatencyRecorder, holder: SessionHolder,
        counters: inout CrossSessionCounters
    ) async {
        let baseURL = baseURLs[entry]!
        let committed: Void? = await call("commit_quota", entry: entry, recorder: recorder, holder: holder) {
            (
                try await self.client.send(
                    "POST", baseURL: baseURL, path: self.quotaPath + "/reservations/\(reservation.requestID)/commit", token: nil,
                    body: .object(["used": .integer(Int64(used))])), ()
            )
        }
        if committed != nil { counters.committedTokens += Int64(used) }

        let recorded: Void? = await call("record_usage", entry: entry, recorder: recorder, holder: holder) {
            (
                try await self.client.send(
                    "POST", baseURL: baseURL, path: "/v1/tenants/\(self.configuration.tenant)/usage", token: nil,
                    body: .object(["requestId": .string(reservation.requestID), "tokens": .integer(Int64(used))])), ()
            )
        }
        if recorded != nil { counters.recordedTokens += Int64(used) }
    }

    /// Changes the router weights at the second region half way through the
    /// replay, then polls the other regions until each serves the new value.
    /// Returns when the change happened (seconds from the start) and each
    /// region's convergence time in milliseconds.
    func changeRouterWeights(startedAt: ContinuousClock.Instant) async -> (atSeconds: Double, milliseconds: [String: Double])? {
        guard configuration.crossSessionState, regions.count > 1 else { return nil }
        let span = Double(trace.durationMilliseconds) / configuration.timeCompression
        try? await Task.sleep(until: startedAt + .milliseconds(span * 0.5), clock: .continuous)

        let weights: JSONValue = .object(["model-a": .number(0.2), "model-b": .number(0.8)])
        let writer = regions[1]
        guard
            (try? await client.send(
                "PUT", baseURL: baseURLs[writer]!, path: Self.routerWeightsPath, token: nil, body: .object(["value": weights]))) != nil
        else { return nil }
        let changed = ContinuousClock.now

        // Poll for up to a minute, so that a region that is down at the
        // change is measured once it is back.
        var converged: [String: Double] = [:]
        while ContinuousClock.now - changed < .seconds(60) {
            for region in regions where region != writer && converged[region] == nil {
                let read = try? await client.send("GET", baseURL: baseURLs[region]!, path: Self.routerWeightsPath, token: nil, body: nil)
                if read?.body["value"] == weights {
                    converged[region] = (ContinuousClock.now - changed).secondsValue * 1000
                }
            }
            if converged.count == regions.count - 1 { break }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return ((changed - startedAt).secondsValue, converged)
    }

    /// Reads the billing totals and every region's quota audit after the replay.
    func crossSessionOutcome(
        _ counters: CrossSessionCounters, convergence: (atSeconds: Double, milliseconds: [String: Double])?
    ) async -> CrossSessionOutcome {
        var outcome = CrossSessionOutcome(
            reservationsGranted: counters.reservationsGranted, reservationsDenied: counters.reservationsDenied,
            reservationsFromChunk: counters.reservationsFromChunk, committedTokens: counters.committedTokens,
            recordedTokens: counters.recordedTokens, billedTokens: nil, billedRecords: nil, quotaAudits: [:],
            weightChangeAtSeconds: convergence?.atSeconds, weightConvergenceMilliseconds: convergence?.milliseconds ?? [:])
        outcome.routerWeightsMissing = counters.routerWeightsMissing

        // Each region flushes its own records before it reads the totals.
        for region in regions {
            let totals = try? await client.send(
                "GET", baseURL: baseURLs[region]!, path: "/v1/tenants/\(configuration.tenant)/usage/totals", token: nil, body: nil)
            outcome.billedTokens = totals?.body["tokens"]?.integerValue ?? outcome.billedTokens
            outcome.billedRecords = totals?.body["records"]?.integerValue ?? outcome.billedRecords
        }
        for region in regions {
            if let status = try? await client.send("GET", baseURL: baseURLs[region]!, path: quotaPath, token: nil, body: nil) {
                outcome.quotaAudits[region] = status.body
            }
        }
        return outcome
    }
}
