import Foundation
import Synchronization

/// When the session log forces its writes to disk.
public enum FsyncPolicy: Sendable, Equatable {
    /// `fsync` after every entry, before the write is acknowledged: no
    /// acknowledged write is lost even if the machine loses power.
    case always
    /// `fsync` every interval on a timer of the log's own, off the write
    /// path. Every entry is still written with `write(2)` before the write is
    /// acknowledged, so a crash of the process (even SIGKILL) loses nothing.
    /// A crash of the machine loses the writes since the last `fsync`.
    case periodic(Duration)
}

/// A failure of the session log, with the file's path.
public struct SessionLogError: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let detail: String

    public var description: String { "session log \(path): \(detail)" }
}

/// A region's durable record of its session mutations: an append-only file of
/// replication entries, one JSON object per line, written before the client's
/// write is acknowledged.
///
/// On restart `recover` reads the entries back. Applied in stamp order, they
/// rebuild every session as the home had it: turns, ledger, values and
/// positions, with idempotency keys for the turns the session still holds.
/// KV-cache refs are recomputable and are not logged.
/// A line cut short by a crash in the middle of a write is dropped and the
/// file truncated to the last whole line.
///
/// NOTE: the file grows without bound (compaction is not built), and
/// `write` (with `fsync` under `.always`) runs on the calling task's thread
/// under the session's lock, so `--fsync always` makes writes wait for the disk.
public final class SessionLog: Sendable {
    public let path: String
    public let policy: FsyncPolicy
    /// The file descriptor and when it was last forced to disk; writes are
    /// serialised so lines never interleave.
    private let file: Mutex<(descriptor: Int32, lastSyncMilliseconds: Int64, failedSync: String?)>
    private let clock: any WallClock
    /// Runs `synchronize` every interval under the periodic policy.
    /// Set once in init and only scheduled, resumed and cancelled, which
    /// dispatch sources allow from any thread.
    /// Nil unless the policy is periodic.
    nonisolated(unsafe) private let syncTimer: (any DispatchSourceTimer)?

    /// Opens (creating if needed) the log at `path` for appending.
    public init(path: String, policy: FsyncPolicy, clock: any WallClock = SystemClock()) throws(SessionLogError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw SessionLogError(path: path, detail: "cannot open for appending: \(String(cString: strerror(errno)))")
        }
        self.path = path
        self.policy = policy
        self.clock = clock
        self.file = Mutex((descriptor, clock.nowMilliseconds(), nil))
        if case .periodic = policy {
            self.syncTimer = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        } else {
            self.syncTimer = nil
        }

        if case .periodic(let interval) = policy {
            // A timer on a shared queue, not a thread per log: a process may
            // open many logs (the fault harness opens hundreds).
            let milliseconds = Int(max(1, interval.wholeMilliseconds))
            guard let syncTimer else { return }
            syncTimer.schedule(deadline: .now() + .milliseconds(milliseconds), repeating: .milliseconds(milliseconds))
            syncTimer.setEventHandler { [weak self] in self?.synchronize() }
            syncTimer.resume()
        }
    }

    /// Forces the file to disk outside the write lock, so appends go on
    /// meanwhile. A failure is kept, and every later append reports it.
    private func synchronize() {
        let descriptor: Int32? = file.withLock { $0.failedSync == nil ? $0.descriptor : nil }
        guard let descriptor else { return }
        let synced = fsync(descriptor) == 0
        let reason = synced ? nil : "fsync failed: \(String(cString: strerror(errno)))"
        let now = clock.nowMilliseconds()
        file.withLock { file in
            if let reason {
                file.failedSync = reason
            } else {
                file.lastSyncMilliseconds = now
            }
        }
    }

    deinit {
        syncTimer?.cancel()
        file.withLock { file in
            fsync(file.descriptor)
            close(file.descriptor)
        }
    }

    /// Appends one entry and, by the policy, forces it to disk. Returns only
    /// once the entry is written, so the caller may then acknowledge the write.
    public func append(_ entry: ReplicationEntry) throws(SessionLogError) {
        var line = entry.json.serializedBytes()
        line.append(UInt8(ascii: "\n"))
        let now = clock.nowMilliseconds()

        let failure: String? = file.withLock { file in
            if let reason = file.failedSync {
                return "an earlier fsync failed (\(reason)), so the kernel may have dropped logged writes; restart the node"
            }

            // A write cut short (a full disk) is cut back off, so the next
            // entry does not land in the middle of a line.
            let start = lseek(file.descriptor, 0, SEEK_END)
            var offset = 0
            while offset < line.count {
                let written = line.withUnsafeBytes { write(file.descriptor, $0.baseAddress! + offset, $0.count - offset) }
                if written < 0, errno == EINTR { continue }
                guard written > 0 else {
                    let reason = "write failed: \(String(cString: strerror(errno)))"
                    if start >= 0 { _ = ftruncate(file.descriptor, start) }
                    return reason
                }
                offset += written
            }

            let due: Bool
            switch policy {
            case .always: due = true
            case .periodic: due = false
            }
            guard due else { return nil }
            // After a failed fsync Linux may mark the lost pages clean, so a
            // later fsync would wrongly succeed: the log stays failed.
            guard fsync(file.descriptor) == 0 else {
                let reason = "fsync failed: \(String(cString: strerror(errno)))"
                file.failedSync = reason
                return reason
            }
            file.lastSyncMilliseconds = now
            return nil
        }
        if let failure { throw SessionLogError(path: path, detail: failure) }
    }

    /// Empties the log and forces that to disk. Later appends start at offset 0.
    public func reset() throws(SessionLogError) {
        let failure: String? = file.withLock { file in
            guard ftruncate(file.descriptor, 0) == 0 else { return "truncate failed: \(String(cString: strerror(errno)))" }
            guard fsync(file.descriptor) == 0 else { return "fsync failed: \(String(cString: strerror(errno)))" }
            return nil
        }
        if let failure { throw SessionLogError(path: path, detail: failure) }
    }

    /// Reads every whole entry of the log at `path` (none if it does not
    /// exist), truncating a torn last line left by a crash.
    ///
    /// - Throws: `SessionLogError` when the file cannot be read, or a whole
    ///   line in the middle is not a valid entry (the log is corrupt, and
    ///   guessing could lose acknowledged writes).
    public static func recover(path: String) throws(SessionLogError) -> [ReplicationEntry] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SessionLogError(path: path, detail: "cannot read the file")
        }
        let bytes = Array(data)

        var entries: [ReplicationEntry] = []
        var lineStart = 0
        var lineNumber = 0
        while let newline = bytes[lineStart...].firstIndex(of: UInt8(ascii: "\n")) {
            lineNumber += 1
            do {
                entries.append(try ReplicationEntry(json: try JSONValue.parse(Array(bytes[lineStart..<newline]))))
            } catch {
                throw SessionLogError(path: path, detail: "line \(lineNumber) is not a valid entry: \(error)")
            }
            lineStart = newline + 1
        }

        // Bytes after the last newline are a write the crash cut short; it was
        // never acknowledged, so dropping it loses nothing.
        if lineStart < bytes.count {
            guard truncate(path, off_t(lineStart)) == 0 else {
                throw SessionLogError(path: path, detail: "cannot truncate a torn last line: \(String(cString: strerror(errno)))")
            }
        }
        return entries
    }

    /// Rebuilds the sessions of `region` from the entries of its log.
    public static func rebuildSessions(
        from entries: [ReplicationEntry], region: String, limits: SessionStoreLimits
    ) throws(ConfigurationError) -> [StandbySession] {
        var replica = try StandbyReplica(
            home: region, configuration: StandbyReplica.Configuration(limits: limits, maximumHeldEntries: Int.max))
        _ = replica.apply(ReplicationBatch(id: ReplicationBatch.ID(0), entries: entries, homeLastSeq: [:]))
        return replica.allSessions
    }
}
