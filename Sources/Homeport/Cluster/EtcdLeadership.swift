import Foundation

/// Finds and moves the leader of a local cluster's etcd members through
/// their v3 JSON gateways (etcd 3.4).
///
/// `POST /v3/maintenance/status` returns a member's own id and the id of
/// the leader it follows. `POST /v3/maintenance/transfer-leadership` with
/// `{"targetID": "<id>"}`, sent to the leader, hands leadership to that
/// member once it has caught up; the leader rejects it otherwise.
struct EtcdLeadership: Sendable {
    let http: HTTPClient
    /// Each region's member, by client port on 127.0.0.1.
    let clientPorts: [String: UInt16]

    /// One member's view: its id and its leader's id (decimal strings, as
    /// the gateway returns 64-bit numbers). `leaderID` is nil while it
    /// follows no leader.
    struct MemberStatus: Equatable {
        var memberID: String
        var leaderID: String?
    }

    /// Returns the status of the member of `region`.
    ///
    /// - Throws: `notReady` when the member does not respond or responds
    ///   with an error.
    func status(of region: String) async throws(LocalClusterError) -> MemberStatus {
        let object = try await post("/v3/maintenance/status", body: .object([:]), to: region)
        guard let memberID = object["header"]?["member_id"]?.stringValue else {
            throw LocalClusterError(.notReady, "etcd \(region) returned a status without header.member_id")
        }
        let leaderID = object["leader"]?.stringValue.flatMap { $0 == "0" ? nil : $0 }
        return MemberStatus(memberID: memberID, leaderID: leaderID)
    }

    /// Returns the region whose member leads, as a majority of members see it.
    ///
    /// - Throws: `notReady` when no majority agrees on a leader.
    func currentLeader() async throws(LocalClusterError) -> String {
        var statuses: [String: MemberStatus] = [:]
        var failures: [String] = []
        for region in clientPorts.keys.sorted() {
            do {
                statuses[region] = try await status(of: region)
            } catch {
                failures.append(error.detail)
            }
        }
        let leaders = statuses.values.compactMap(\.leaderID)
        let majority = clientPorts.count / 2 + 1
        guard let leaderID = Set(leaders).first(where: { id in leaders.filter { $0 == id }.count >= majority }),
            let region = statuses.first(where: { $0.value.memberID == leaderID })?.key
        else {
            throw LocalClusterError(
                .notReady,
                "no majority of etcd members agrees on a leader: \(statuses.map { "\($0.key) follows \($0.value.leaderID ?? "none")" }.sorted().joined(separator: ", "))"
                    + (failures.isEmpty ? "" : "; \(failures.joined(separator: "; "))"))
        }
        return region
    }

    /// Makes the member of `target` the leader and returns once every member
    /// follows it. Returns every region's member id.
    ///
    /// A transfer fails while the target is still catching up, or when the
    /// leader changed meanwhile, so it is retried until `timeout`.
    ///
    /// - Throws: `leaderPlacementFailed` with the last failure when the
    ///   members do not all follow the target within `timeout`.
    func place(leader target: String, timeout: Duration) async throws(LocalClusterError) -> [String: String] {
        let deadline = ContinuousClock.now + timeout
        var lastFailure = "no member responded"
        while ContinuousClock.now < deadline {
            do throws(LocalClusterError) {
                var statuses: [String: MemberStatus] = [:]
                for region in clientPorts.keys {
                    statuses[region] = try await status(of: region)
                }
                let memberIDs = statuses.mapValues(\.memberID)
                guard let targetID = memberIDs[target] else {
                    throw LocalClusterError(.leaderPlacementFailed, "\(target) has no etcd member")
                }
                if statuses.values.allSatisfy({ $0.leaderID == targetID }) {
                    return memberIDs
                }

                // Ask the member that the target follows, which is the
                // leader unless an election is under way.
                if let leaderID = statuses[target]?.leaderID, leaderID != targetID,
                    let leader = memberIDs.first(where: { $0.value == leaderID })?.key
                {
                    _ = try await post(
                        "/v3/maintenance/transfer-leadership", body: .object(["targetID": .string(targetID)]), to: leader)
                    lastFailure = "the transfer from \(leader) was accepted, but not every member follows \(target) yet"
                } else {
                    lastFailure = "the members are electing a leader"
                }
            } catch {
                lastFailure = error.detail
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        throw LocalClusterError(
            .leaderPlacementFailed,
            "etcd did not make \(target)'s member the leader within \(timeout): \(lastFailure). Read the etcd members' logs, or start the cluster with another leader region."
        )
    }

    /// Sends a gateway request and returns the parsed response object.
    private func post(_ path: String, body: JSONValue, to region: String) async throws(LocalClusterError) -> JSONValue {
        guard let port = clientPorts[region] else {
            throw LocalClusterError(.unknownRegion, "no etcd member for region \"\(region)\"")
        }
        let request = HTTPRequest(
            method: "POST", path: path, headers: ["content-type": "application/json"], body: body.serializedBytes())
        let response: HTTPResponse
        do {
            response = try await http.send(request, host: "127.0.0.1", port: port)
        } catch {
            throw LocalClusterError(.notReady, "etcd \(region) (127.0.0.1:\(port)) did not respond to \(path): \(error)")
        }
        let object = try? JSONValue.parse(response.body)
        guard response.status == 200, let object else {
            let message = object?["message"]?.stringValue ?? object?["error"]?.stringValue ?? String(decoding: response.body, as: UTF8.self)
            throw LocalClusterError(.notReady, "etcd \(region) rejected \(path) with status \(response.status): \(message)")
        }
        return object
    }
}
