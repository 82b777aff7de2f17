import Foundation

/// The state file `cluster.json` in a local cluster's directory: every
/// process with its pid, role, region, ports and log, and what another
/// process needs to inspect, restart or stop the cluster.
///
/// `LocalCluster` writes it after each process it launches, so a start that
/// fails or is interrupted half-way can still be stopped with
/// `homeport cluster down`.
struct LocalClusterState: Sendable, Equatable, Codable {
    static let fileName = "cluster.json"
    static let currentVersion = 1

    var version = Self.currentVersion
    /// The regions in topology order.
    var regions: [String]
    /// The generated topology file with the serve ports.
    var topologyPath: String
    /// The generated routing-token key file that every region shares.
    var keysPath: String
    /// The policy file the serve processes run with; nil for the built-in table.
    var policyPath: String?
    var leaseTTLMilliseconds: Int
    var etcdHeartbeatMilliseconds: Int
    var etcdElectionTimeoutMilliseconds: Int
    /// Each region's peer proxy delay in milliseconds.
    var peerDelayMilliseconds: [String: Int64]
    /// The region whose etcd member was made leader at start.
    var leader: String
    /// Each region's etcd member id (decimal, as the gateway returns it).
    var etcdMemberIDs: [String: String] = [:]
    var readinessTimeoutMilliseconds: Int64
    var stopGracePeriodMilliseconds: Int64
    var processes: [LocalClusterProcess] = []

    static func path(in directory: String) -> String {
        (directory as NSString).appendingPathComponent(fileName)
    }

    /// Reads the state file of `directory`.
    ///
    /// - Throws: `stateFileInvalid` when the file is missing, unreadable or
    ///   not a state file of this version.
    static func load(directory: String) throws(LocalClusterError) -> LocalClusterState {
        let path = path(in: directory)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LocalClusterError(
                .stateFileInvalid,
                "\(directory) holds no local cluster: \(path) is missing or unreadable; start one with `homeport cluster up --dir \(directory)`"
            )
        }
        let state: LocalClusterState
        do {
            state = try JSONDecoder().decode(LocalClusterState.self, from: data)
        } catch {
            throw LocalClusterError(.stateFileInvalid, "\(path) is not a local cluster state file: \(error)")
        }
        guard state.version == currentVersion else {
            throw LocalClusterError(
                .stateFileInvalid, "\(path) has version \(state.version); this homeport reads version \(currentVersion) only")
        }
        return state
    }

    /// Writes the file atomically: to a temporary file, then renamed over the old one.
    func save(directory: String) throws(LocalClusterError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            try encoder.encode(self).write(to: URL(fileURLWithPath: Self.path(in: directory)), options: .atomic)
        } catch {
            throw LocalClusterError(
                .stateFileInvalid, "cannot write \(Self.path(in: directory)): \(error); check that the directory is writable")
        }
    }

    /// Replaces the record of the process with the same role and region, or
    /// appends it.
    mutating func record(_ process: LocalClusterProcess) {
        if let index = processes.firstIndex(where: { $0.role == process.role && $0.region == process.region }) {
            processes[index] = process
        } else {
            processes.append(process)
        }
    }

    func process(_ role: LocalClusterProcess.Role, _ region: String) -> LocalClusterProcess? {
        processes.first { $0.role == role && $0.region == region }
    }
}
