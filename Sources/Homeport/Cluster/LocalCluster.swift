import Foundation

/// Homeport deployed the way a platform team runs it, on one machine: per
/// region a `redis-server`, one member of a three-member etcd cluster behind
/// a delay proxy, and a `homeport serve` process that uses both.
///
/// The serve processes apply the latency matrix to every call between
/// regions themselves. etcd's peer traffic passes the proxies, whose delays
/// (`EtcdPeerDelays`) reproduce the matrix's round trips. After start, the
/// chosen region's member is made the etcd leader.
///
/// The processes outlive the `LocalCluster` and the process that started
/// them: `homeport cluster up` returns while they run. The state file
/// `cluster.json` in the directory lists them, so `attach(directory:)` in
/// another process can inspect, restart or stop them. Every listener binds
/// 127.0.0.1 on a port that was free when the cluster started.
///
/// Operations are not meant to overlap: one restart at a time. State-file
/// writes of two processes that operate on one cluster at once may overwrite
/// each other.
public actor LocalCluster {
    public nonisolated let directory: String
    /// The regions, in topology order, with the serve processes' ports.
    public nonisolated let topology: RegionTopology
    public nonisolated let peerDelays: EtcdPeerDelays
    /// Each region's serve process, such as `http://127.0.0.1:41234`.
    public nonisolated let baseURLs: [String: String]
    /// Each region's etcd member's client address (its v3 JSON gateway).
    public nonisolated let etcdClientEndpoints: [String: EtcdLinearizableStore.Endpoint]
    /// Each region's Redis port on 127.0.0.1.
    public nonisolated let redisPorts: [String: UInt16]

    private var state: LocalClusterState
    /// The processes this instance launched. Foundation reaps each when it
    /// exits; holding the `Process` keeps its bookkeeping alive until then.
    private var children: [Int32: Process] = [:]
    private let http: HTTPClient
    private let logger: Logger?

    private init(directory: String, state: LocalClusterState, topology: RegionTopology, logger: Logger?) {
        self.directory = directory
        self.state = state
        self.topology = topology
        self.logger = logger
        self.http = HTTPClient(timeout: .seconds(5), maximumConcurrentExchanges: 8, maximumIdlePerEndpoint: 0)
        self.peerDelays = EtcdPeerDelays(oneWay: state.peerDelayMilliseconds.mapValues { .milliseconds($0) })

        var baseURLs: [String: String] = [:]
        var etcdClientEndpoints: [String: EtcdLinearizableStore.Endpoint] = [:]
        var redisPorts: [String: UInt16] = [:]
        for region in state.regions {
            baseURLs[region] = topology.endpoint(region)?.baseURL
            if let port = state.process(.etcd, region)?.ports["client"] {
                etcdClientEndpoints[region] = EtcdLinearizableStore.Endpoint(host: "127.0.0.1", port: port)
            }
            redisPorts[region] = state.process(.redis, region)?.ports["redis"]
        }
        self.baseURLs = baseURLs
        self.etcdClientEndpoints = etcdClientEndpoints
        self.redisPorts = redisPorts
    }

    /// The regions in topology order.
    public nonisolated var regions: [String] { topology.regionNames }

    /// The region whose etcd member was made leader at start. etcd may
    /// elect another later, and `currentLeader()` queries the members.
    public var leader: String { state.leader }

    /// Every process of the cluster with its pid, ports and log.
    public var processes: [LocalClusterProcess] { state.processes }

    /// The policy file the serve processes run with; nil for the built-in table.
    public var policyPath: String? { state.policyPath }

    // MARK: Start and attach

    /// Starts every process, places the etcd leader and returns once every
    /// serve process responds to `GET /healthz`.
    ///
    /// Order: Redis, peer proxies, etcd members (healthy once they elected
    /// a leader through the proxies), the leader transfer, then the serve
    /// processes. When a process exits because another program took its
    /// port in the meantime, everything is stopped and started again with
    /// new ports, up to three times.
    ///
    /// - Throws: `invalidConfiguration`, `alreadyRunning` or
    ///   `directoryUnusable` before anything starts. When a process fails
    ///   (`launchFailed`, `exitedEarly`, `notReady`,
    ///   `leaderPlacementFailed`), every process already started is stopped
    ///   and the directory is kept with the logs the error names; remove it
    ///   with `homeport cluster down --dir DIR`.
    public static func start(_ configuration: Configuration, logger: Logger? = nil) async throws(LocalClusterError) -> LocalCluster {
        var configuration = configuration
        configuration.directory = absolutePath(configuration.directory)
        configuration.executablePath = absolutePath(configuration.executablePath)
        configuration.policyPath = configuration.policyPath.map(absolutePath)
        let delays = try configuration.validate()
        try prepareDirectory(configuration.directory)

        var attempt = 1
        while true {
            let cluster = try create(configuration, delays: delays, logger: logger)
            do {
                try await cluster.launchAll(configuration)
                return cluster
            } catch {
                _ = await cluster.stopProcesses()
                let portTaken =
                    error.code == .exitedEarly && error.detail.range(of: "address already in use", options: .caseInsensitive) != nil
                guard portTaken, attempt < 3 else {
                    throw LocalClusterError(
                        error.code,
                        error.detail
                            + "\nEvery process that started was stopped. The logs are kept in \(configuration.directory); remove it with `homeport cluster down --dir \(configuration.directory)`."
                    )
                }
                logger?.warning("a port was taken, starting again with new ports", ["attempt": "\(attempt)", "error": error.detail])
                try? FileManager.default.removeItem(atPath: configuration.directory)
                attempt += 1
            }
        }
    }

    /// Returns the cluster whose state file is in `directory`, started by
    /// this or another process, to inspect, restart or stop it.
    ///
    /// - Throws: `stateFileInvalid` when the directory contains no readable
    ///   state file or topology.
    public static func attach(directory: String, logger: Logger? = nil) throws(LocalClusterError) -> LocalCluster {
        let directory = absolutePath(directory)
        let state = try LocalClusterState.load(directory: directory)
        let topology: RegionTopology
        do {
            topology = try TopologyFile.load(path: state.topologyPath)
        } catch {
            throw LocalClusterError(.stateFileInvalid, "the cluster in \(directory) has no usable topology: \(error)")
        }
        return LocalCluster(directory: directory, state: state, topology: topology, logger: logger)
    }

    /// Rejects a directory that contains anything, so that `stop()`, which
    /// removes the directory, never removes files it did not create.
    private static func prepareDirectory(_ directory: String) throws(LocalClusterError) {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        if manager.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw LocalClusterError(.directoryUnusable, "\(directory) is a file; choose a directory that does not exist yet")
            }
            let contents = (try? manager.contentsOfDirectory(atPath: directory)) ?? []
            if contents.contains(LocalClusterState.fileName), let state = try? LocalClusterState.load(directory: directory) {
                let running = state.processes.filter(\.isRunning)
                guard running.isEmpty else {
                    throw LocalClusterError(
                        .alreadyRunning,
                        "a cluster already runs in \(directory) (\(running.map { "\($0.name) pid \($0.pid)" }.joined(separator: ", "))); stop it with `homeport cluster down --dir \(directory)` or choose another directory"
                    )
                }
                throw LocalClusterError(
                    .directoryUnusable,
                    "\(directory) holds a stopped cluster; remove it with `homeport cluster down --dir \(directory)` or choose another directory"
                )
            }
            guard contents.isEmpty else {
                throw LocalClusterError(
                    .directoryUnusable,
                    "\(directory) exists and is not empty; choose a directory that does not exist yet, because stopping the cluster removes it"
                )
            }
        }
    }

    /// Chooses ports, creates the directory tree and writes the topology,
    /// key and state files.
    private static func create(
        _ configuration: Configuration, delays: EtcdPeerDelays, logger: Logger?
    ) throws(LocalClusterError) -> LocalCluster {
        let regions = configuration.topology.regionNames
        let layout = try LocalClusterLayout.make(directory: configuration.directory, regions: regions)
        let topology = try layout.topology(from: configuration.topology)

        do {
            for path in [configuration.directory] + layout.directories {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            }
            try Data(TopologyFile.serialize(topology).serializedBytes()).write(to: URL(fileURLWithPath: layout.topologyPath))
            let key = Base64URL.encode(try SecureRandom.bytes(count: 32))
            let keys = JSONValue.object(["signingKeyID": .string("k1"), "keys": .object(["k1": .string(key)])])
            try Data(keys.serializedBytes()).write(to: URL(fileURLWithPath: layout.keysPath))
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: layout.keysPath)
        } catch {
            throw LocalClusterError(
                .directoryUnusable, "cannot create the cluster's files in \(configuration.directory): \(error); check that it is writable")
        }

        let clusterToken = "homeport-" + UUID().uuidString.lowercased()
        var state = LocalClusterState(
            regions: regions, topologyPath: layout.topologyPath, keysPath: layout.keysPath, policyPath: configuration.policyPath,
            leaseTTLMilliseconds: configuration.leaseTTLMilliseconds,
            etcdHeartbeatMilliseconds: configuration.etcdHeartbeatMilliseconds,
            etcdElectionTimeoutMilliseconds: configuration.etcdElectionTimeoutMilliseconds,
            peerDelayMilliseconds: delays.oneWay.mapValues(\.wholeMilliseconds), leader: configuration.leader,
            readinessTimeoutMilliseconds: configuration.readinessTimeout.wholeMilliseconds,
            stopGracePeriodMilliseconds: configuration.stopGracePeriod.wholeMilliseconds)
        for region in regions {
            state.record(layout.redis(region, configuration: configuration))
            state.record(layout.peerProxy(region, delay: delays.oneWay[region]!, executablePath: configuration.executablePath))
            state.record(layout.etcd(region, clusterToken: clusterToken, configuration: configuration))
            state.record(layout.server(region, policyPath: configuration.policyPath, configuration: configuration))
        }
        try state.save(directory: configuration.directory)
        return LocalCluster(directory: configuration.directory, state: state, topology: topology, logger: logger)
    }

    /// Launches each group of processes and waits for it before the next.
    private func launchAll(_ configuration: Configuration) async throws(LocalClusterError) {
        for role in [LocalClusterProcess.Role.redis, .peerProxy, .etcd] {
            var launched: [LocalClusterProcess] = []
            for region in regions {
                launched.append(try await launch(role, region))
            }
            for record in launched {
                try await readiness.waitUntilReady(record)
            }
        }

        let memberIDs = try await leadership.place(leader: configuration.leader, timeout: configuration.readinessTimeout)
        state.etcdMemberIDs = memberIDs
        try state.save(directory: directory)
        logger?.info("etcd leader placed", ["leader": configuration.leader])

        try await startServers()
    }

    // MARK: Operations

    /// Kills the region's serve process with SIGKILL, as a crash would, and
    /// returns once it has exited. Its Redis and etcd member keep running.
    ///
    /// - Throws: `unknownRegion`, or `stopFailed` when it still runs 5 s
    ///   after SIGKILL.
    public func killServer(_ region: String) async throws(LocalClusterError) {
        let record = try existing(.server, region)
        guard await ProcessControl.killAndWait(record) else {
            throw LocalClusterError(.stopFailed, "\(record.name) (pid \(record.pid)) still runs 5 s after SIGKILL")
        }
        children[record.pid] = nil
        logger?.info("server killed", ["region": region, "pid": "\(record.pid)"])
    }

    /// Starts the region's serve process again with the same port, Redis,
    /// keys and policy, and returns once it responds to `GET /healthz`, which it
    /// does only after it reconciled forward any takeover. A server that still runs is
    /// stopped first with SIGTERM.
    ///
    /// - Throws: `unknownRegion`, or the start failure naming its log.
    public func restartServer(_ region: String) async throws(LocalClusterError) {
        let record = try existing(.server, region)
        try await stopGracefully([record])
        let launched = try await launch(.server, region)
        try await readiness.waitUntilReady(launched)
    }

    /// Stops every serve process with SIGTERM (each drains its replication
    /// first), then starts them all again with another policy table, and
    /// returns once they respond to `GET /healthz`. Redis and etcd keep running and
    /// keep their data.
    ///
    /// - Parameter policyPath: the new policy table; nil for the built-in one.
    /// - Throws: `invalidConfiguration` for a bad policy file, before any
    ///   server stops; otherwise the start failure naming its log.
    public func restartServers(policyPath: String?) async throws(LocalClusterError) {
        let policyPath = policyPath.map(Self.absolutePath)
        if let policyPath {
            try Configuration.checkPolicy(path: policyPath)
        }
        try await stopGracefully(state.processes.filter { $0.role == .server })

        state.policyPath = policyPath
        for region in regions {
            guard var record = state.process(.server, region) else { continue }
            record.arguments = LocalClusterLayout.replacingPolicy(in: record.arguments, with: policyPath)
            state.record(record)
        }
        try state.save(directory: directory)
        try await startServers()
    }

    /// Asks the etcd members which region's member leads now.
    public func currentLeader() async throws(LocalClusterError) -> String {
        try await leadership.currentLeader()
    }

    /// Makes `region`'s etcd member the leader.
    public func placeLeader(_ region: String) async throws(LocalClusterError) {
        guard regions.contains(region) else {
            throw LocalClusterError(
                .unknownRegion, "\"\(region)\" is not a region of this cluster; it has \(regions.joined(separator: ", "))")
        }
        state.etcdMemberIDs = try await leadership.place(leader: region, timeout: readiness.timeout)
        state.leader = region
        try state.save(directory: directory)
    }

    /// Stops every process by pid, then removes the directory. The serve
    /// processes stop first, so that they drain while etcd and Redis still
    /// run. The etcd followers stop before the leader, because a leader that
    /// gets SIGTERM first waits for a follower to take over.
    ///
    /// Each process gets SIGTERM and, if it still runs after the grace
    /// period, SIGKILL. Calling `stop()` again on a stopped cluster only
    /// removes what is left of the directory.
    ///
    /// - Throws: `stopFailed` naming the processes that survived SIGKILL; the
    ///   directory is then kept.
    public func stop() async throws(LocalClusterError) {
        let survivors = await stopProcesses()
        guard survivors.isEmpty else {
            throw LocalClusterError(
                .stopFailed,
                "these processes still run after SIGKILL: \(survivors.map { "\($0.name) pid \($0.pid)" }.joined(separator: ", ")); the directory \(directory) is kept"
            )
        }
        do {
            try FileManager.default.removeItem(atPath: directory)
        } catch {
            guard FileManager.default.fileExists(atPath: directory) else { return }
            throw LocalClusterError(.stopFailed, "every process stopped, but \(directory) could not be removed: \(error)")
        }
        logger?.info("cluster stopped", ["directory": directory])
    }

    /// Reads the reconcile-forwards that `region`'s serve processes logged
    /// ("reconcile finished" lines) and returns them oldest first. The log is appended to
    /// across restarts, so a caller that counts them before and after an
    /// operation learns which ones that operation caused.
    public func reconcileReports(of region: String) -> [ReconcileReport] {
        guard let record = state.process(.server, region), let data = FileManager.default.contents(atPath: record.logPath) else {
            return []
        }
        var reports: [ReconcileReport] = []
        for line in data.split(separator: UInt8(ascii: "\n")) {
            guard let entry = try? JSONValue.parse(Array(line)), entry["msg"]?.stringValue == "reconcile finished",
                let target = entry["to"]?.stringValue
            else { continue }
            var report = ReconcileReport(to: target)
            report.sessions = entry["sessions"]?.stringValue.flatMap { Int($0) } ?? 0
            report.recordsShipped = entry["recordsShipped"]?.stringValue.flatMap { Int($0) } ?? 0
            report.recordsMerged = entry["recordsMerged"]?.stringValue.flatMap { Int($0) } ?? 0
            reports.append(report)
        }
        return reports
    }

    // MARK: Helpers

    private var readiness: ClusterReadiness {
        ClusterReadiness(http: http, timeout: .milliseconds(state.readinessTimeoutMilliseconds))
    }

    private var leadership: EtcdLeadership {
        EtcdLeadership(http: http, clientPorts: etcdClientEndpoints.mapValues(\.port))
    }

    private func existing(_ role: LocalClusterProcess.Role, _ region: String) throws(LocalClusterError) -> LocalClusterProcess {
        guard let record = state.process(role, region) else {
            throw LocalClusterError(
                .unknownRegion, "\"\(region)\" is not a region of this cluster; it has \(regions.joined(separator: ", "))")
        }
        return record
    }

    /// Launches the process that the state file describes for `role` and
    /// `region`, and records its pid before anything waits for it.
    private func launch(_ role: LocalClusterProcess.Role, _ region: String) async throws(LocalClusterError) -> LocalClusterProcess {
        var record = try existing(role, region)
        let (process, startTime) = try await ProcessControl.launch(record)
        record.pid = process.processIdentifier
        record.startTime = startTime
        children[record.pid] = process
        state.record(record)
        try state.save(directory: directory)
        logger?.info("process started", ["role": role.rawValue, "region": region, "pid": "\(record.pid)", "log": record.logPath])
        return record
    }

    private func startServers() async throws(LocalClusterError) {
        var launched: [LocalClusterProcess] = []
        for region in regions {
            launched.append(try await launch(.server, region))
        }
        for record in launched {
            try await readiness.waitUntilReady(record)
        }
    }

    /// Stops the processes in parallel with SIGTERM, then SIGKILL after the
    /// grace period.
    ///
    /// - Throws: `stopFailed` naming the processes that survived SIGKILL.
    private func stopGracefully(_ records: [LocalClusterProcess]) async throws(LocalClusterError) {
        let survivors = await stopInParallel(records)
        guard survivors.isEmpty else {
            throw LocalClusterError(
                .stopFailed,
                "these processes still run after SIGKILL: \(survivors.map { "\($0.name) pid \($0.pid)" }.joined(separator: ", "))")
        }
    }

    /// Stops every process in order and returns those that survived SIGKILL.
    private func stopProcesses() async -> [LocalClusterProcess] {
        let running = state.processes.filter(\.isRunning)
        var survivors = await stopInParallel(running.filter { $0.role == .server })

        // A leader that gets SIGTERM first hands leadership to a follower it
        // is still connected to, and waits seconds when that follower is
        // stopping too. So the followers stop first, and the leader only once
        // their closed connections passed the peer proxies, which delay a
        // close like any other byte.
        let members = running.filter { $0.role == .etcd }
        let leader = (try? await leadership.currentLeader()) ?? state.leader
        survivors += await stopInParallel(members.filter { $0.region != leader })
        let largestDelay = peerDelays.oneWay.values.max() ?? .zero
        try? await Task.sleep(for: largestDelay * 2 + .milliseconds(100))
        survivors += await stopInParallel(members.filter { $0.region == leader })

        survivors += await stopInParallel(running.filter { $0.role == .peerProxy || $0.role == .redis })
        return survivors
    }

    private func stopInParallel(_ records: [LocalClusterProcess]) async -> [LocalClusterProcess] {
        let gracePeriod = Duration.milliseconds(state.stopGracePeriodMilliseconds)
        let outcomes = await withTaskGroup(of: (LocalClusterProcess, ProcessControl.StopOutcome).self) { group in
            for record in records {
                group.addTask { (record, await ProcessControl.stop(record, gracePeriod: gracePeriod)) }
            }
            var outcomes: [(LocalClusterProcess, ProcessControl.StopOutcome)] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes
        }

        var survivors: [LocalClusterProcess] = []
        for (record, outcome) in outcomes {
            switch outcome {
            case .notRunning:
                break
            case .terminated:
                logger?.info("process stopped", ["role": record.role.rawValue, "region": record.region, "pid": "\(record.pid)"])
            case .killed:
                logger?.warning(
                    "process ignored SIGTERM and was killed",
                    ["role": record.role.rawValue, "region": record.region, "pid": "\(record.pid)", "gracePeriod": "\(gracePeriod)"])
            case .survived:
                logger?.error("process survived SIGKILL", ["role": record.role.rawValue, "region": record.region, "pid": "\(record.pid)"])
                survivors.append(record)
            }
            if outcome != .survived {
                children[record.pid] = nil
            }
        }
        return survivors
    }

    static func absolutePath(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.path
    }
}
