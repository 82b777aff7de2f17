import Foundation

/// Launches, signals and awaits the processes of a local cluster by pid.
///
/// A process is identified by its pid and its start time, so a pid that the
/// kernel gave to a later process is never signalled. Waiting polls
/// `/proc/PID/stat` with `Task.sleep`, which works for processes that another
/// `homeport` started (after `LocalCluster.attach`) as well as for children;
/// nothing blocks a thread of the Swift concurrency pool. Foundation's
/// `Process` reaps the children this process launched on its own thread.
enum ProcessControl {
    /// How often `waitForExit` checks the process.
    static let pollInterval = Duration.milliseconds(20)

    /// Launches `executablePath` with its standard output and standard error
    /// appended to `logPath` and its standard input from /dev/null.
    ///
    /// Foundation's `Process` puts the child in a process group of its own,
    /// so a Ctrl-C in the terminal that started it does not reach it, and it
    /// keeps running after this process exits.
    ///
    /// A child inherits the signal mask of the thread that spawns it, and the
    /// threads of the Swift concurrency pool block every signal. Redis leaves
    /// the mask as it finds it, so spawned from the pool it would never see
    /// SIGTERM. The spawn therefore runs on a thread of its own with an empty
    /// signal mask.
    ///
    /// - Returns: the `Process` (keep it until the child exits) and the
    ///   child's start time.
    /// - Throws: `launchFailed` naming the process when the log cannot be
    ///   opened or the executable cannot be spawned.
    static func launch(_ record: LocalClusterProcess) async throws(LocalClusterError) -> (process: Process, startTime: UInt64) {
        let descriptor = open(record.logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw LocalClusterError(
                .launchFailed,
                "cannot open the log file \(record.logPath) of \(record.name): \(String(cString: strerror(errno))); check that the cluster directory is writable"
            )
        }
        let log = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: record.executablePath)
        process.arguments = record.arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        let spawned: Result<Void, any Error> = await withCheckedContinuation { continuation in
            let thread = Thread {
                var empty = sigset_t()
                sigemptyset(&empty)
                pthread_sigmask(SIG_SETMASK, &empty, nil)
                continuation.resume(returning: Result { try process.run() })
            }
            thread.name = "homeport-cluster-spawn"
            thread.start()
        }
        try? log.close()
        if case .failure(let error) = spawned {
            throw LocalClusterError(
                .launchFailed,
                "cannot launch \(record.name) (\(record.executablePath)): \(error.localizedDescription); check that the executable exists and runs"
            )
        }

        let pid = process.processIdentifier
        guard let startTime = startTime(of: pid) else {
            throw LocalClusterError(
                .exitedEarly,
                "\(record.name) (pid \(pid)) exited as soon as it was launched; read its log \(record.logPath)")
        }
        return (process, startTime)
    }

    /// Returns the start time of a live process in clock ticks since boot,
    /// or nil when no process has the pid or it is a zombie.
    static func startTime(of pid: Int32) -> UInt64? {
        guard pid > 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return nil }

        // The second field is the command name in parentheses, which may hold
        // spaces and parentheses itself, so the fields are counted from the
        // last ')': the state is field 3 and the start time field 22.
        guard let end = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        guard fields.count > 19 else { return nil }
        let state = fields[0]
        guard state != "Z", state != "X", state != "x" else { return nil }
        return UInt64(fields[19])
    }

    /// Sends `signal` to the process if it still runs.
    /// Returns false when it had already exited.
    @discardableResult
    static func send(_ signal: Int32, to record: LocalClusterProcess) -> Bool {
        guard record.isRunning else { return false }
        return kill(record.pid, signal) == 0
    }

    /// Waits until the process has exited or `timeout` has passed.
    /// Returns true when it has exited.
    static func waitForExit(_ record: LocalClusterProcess, timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while record.isRunning {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: pollInterval)
        }
        return true
    }

    /// The way a process ended when it was stopped.
    enum StopOutcome: Equatable {
        /// It was not running.
        case notRunning
        /// It exited after SIGTERM within the grace period.
        case terminated
        /// It ignored SIGTERM for the grace period and was killed.
        case killed
        /// It still ran 5 s after SIGKILL (a process in uninterruptible sleep).
        case survived
    }

    /// Sends SIGTERM, and SIGKILL if the process still runs after
    /// `gracePeriod`, then waits for it to exit.
    static func stop(_ record: LocalClusterProcess, gracePeriod: Duration) async -> StopOutcome {
        guard send(SIGTERM, to: record) else { return .notRunning }
        if await waitForExit(record, timeout: gracePeriod) { return .terminated }

        send(SIGKILL, to: record)
        return await waitForExit(record, timeout: .seconds(5)) ? .killed : .survived
    }

    /// Sends SIGKILL and waits for the process to exit.
    /// Returns false when it still runs after 5 s.
    static func killAndWait(_ record: LocalClusterProcess) async -> Bool {
        guard send(SIGKILL, to: record) else { return true }
        return await waitForExit(record, timeout: .seconds(5))
    }

    /// Returns the last `lineCount` lines of a log file, or a note that it
    /// cannot be read.
    static func tail(of path: String, lineCount: Int = 15) -> String {
        guard let data = FileManager.default.contents(atPath: path) else { return "(cannot read \(path))" }
        let lines = String(decoding: data.suffix(64 << 10), as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true)
        guard !lines.isEmpty else { return "(the log is empty)" }
        return lines.suffix(lineCount).map { "    " + $0 }.joined(separator: "\n")
    }
}
