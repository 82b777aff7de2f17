import Foundation
import Synchronization

/// A region's durable copy of its usage records: the append-only file
/// `usage.log` in the data directory, one JSON object per line.
///
/// A region writes `{"recorded":{record}}` before it accepts a record, and
/// `{"flushed":{"tenant":…,"requestIds":[…]}}` once the store counted those
/// records. After a crash, the records without a `flushed` line are flushed
/// again. Some of them may already be in the store (the crash came between
/// the store's commit and the `flushed` line), and the store's request keys
/// keep them from counting twice.
///
/// A line cut short by a crash is dropped on recovery and the file truncated
/// to the last whole line. `compact` rewrites the file with only the records
/// still held, through a temporary file and a rename.
///
/// Every write runs `write(2)` before it returns, so a crash of the process
/// loses no accepted record. A crash of the machine loses the records since
/// the last `fsync`, which `FsyncPolicy` schedules.
final class UsageLog: Sendable {
    static let fileName = "usage.log"

    /// The records a log held when it was opened.
    struct Recovered: Sendable {
        /// Records without a `flushed` line, in log order.
        var pending: [UsageRecord] = []
        /// Records with a `flushed` line, in the order of those lines.
        var flushed: [UsageRecord] = []
        /// Whole lines read, for the compaction threshold.
        var lineCount = 0
    }

    private struct FileState {
        var descriptor: Int32
        var lineCount: Int
        var lastSyncMilliseconds: Int64
        /// Set after a failed `fsync`. Linux may then have dropped dirty pages
        /// and marked them clean, so the log refuses further writes.
        var failedSync: String?
    }

    let path: String
    let policy: FsyncPolicy
    let recovered: Recovered
    private let clock: any WallClock
    /// The open file; writes are serialised so lines never interleave.
    private let file: Mutex<FileState>

    /// Opens `usage.log` in `directory`, creating the directory and the file
    /// as needed, and reads back the records it contains.
    ///
    /// - Throws: `logFailed` when the directory or file cannot be created,
    ///   read or opened, or a whole line is not a valid log entry (a corrupt
    ///   log, which this code does not guess at).
    init(directory: String, policy: FsyncPolicy, clock: any WallClock = SystemClock()) throws(BillingError) {
        let path = directory + "/" + Self.fileName
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw BillingError(.logFailed, "cannot create the usage log directory \(directory): \(error.localizedDescription)")
        }

        let recovered = try Self.recover(path: path)
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw BillingError(.logFailed, "cannot open the usage log \(path) for appending: \(String(cString: strerror(errno)))")
        }

        self.path = path
        self.policy = policy
        self.recovered = recovered
        self.clock = clock
        self.file = Mutex(
            FileState(descriptor: descriptor, lineCount: recovered.lineCount, lastSyncMilliseconds: clock.nowMilliseconds()))
    }

    deinit {
        file.withLock { file in
            fsync(file.descriptor)
            close(file.descriptor)
        }
    }

    /// Whole lines in the file, for deciding when to compact it.
    var lineCount: Int {
        file.withLock { $0.lineCount }
    }

    /// Appends a record's line and, by the policy, forces it to disk.
    func appendRecorded(_ record: UsageRecord) throws(BillingError) {
        try append([Self.recordedLine(record)])
    }

    /// Appends the line that marks the records flushed.
    func appendFlushed(tenant: TenantID, requestIDs: [String]) throws(BillingError) {
        try append([Self.flushedLine(tenant: tenant, requestIDs: requestIDs)])
    }

    /// Rewrites the log with `unflushed` records and `remembered` flushed
    /// ones, forced to disk before it replaces the old file.
    ///
    /// The caller must keep every other write out until this returns, so no
    /// record lands in the old file after its snapshot was taken.
    func compact(unflushed: [UsageRecord], remembered: [UsageRecord]) throws(BillingError) {
        var lines = remembered.map(Self.recordedLine) + unflushed.map(Self.recordedLine)
        var rememberedByTenant: [TenantID: [String]] = [:]
        for record in remembered {
            rememberedByTenant[record.tenant, default: []].append(record.requestID)
        }
        for (tenant, requestIDs) in rememberedByTenant.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            lines.append(Self.flushedLine(tenant: tenant, requestIDs: requestIDs))
        }

        let temporaryPath = path + ".compacting"
        let failure: String? = file.withLock { file in
            let descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else { return "cannot create \(temporaryPath): \(String(cString: strerror(errno)))" }

            var bytes: [UInt8] = []
            for line in lines { bytes += line }
            if let reason = Self.writeAll(bytes, to: descriptor) {
                close(descriptor)
                return reason
            }
            guard fsync(descriptor) == 0 else {
                close(descriptor)
                return "fsync of \(temporaryPath) failed: \(String(cString: strerror(errno)))"
            }
            close(descriptor)

            guard rename(temporaryPath, path) == 0 else { return "cannot rename \(temporaryPath): \(String(cString: strerror(errno)))" }
            Self.syncDirectory(of: path)

            let reopened = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
            guard reopened >= 0 else { return "cannot reopen \(path): \(String(cString: strerror(errno)))" }
            close(file.descriptor)
            file.descriptor = reopened
            file.lineCount = lines.count
            return nil
        }
        if let failure { throw BillingError(.logFailed, "compaction of the usage log \(path) failed: \(failure)") }
    }

    private func append(_ lines: [[UInt8]]) throws(BillingError) {
        var bytes: [UInt8] = []
        for line in lines { bytes += line }
        let now = clock.nowMilliseconds()

        let failure: String? = file.withLock { file in
            if let reason = file.failedSync {
                return "an earlier fsync failed (\(reason)), so the kernel may have dropped logged records; restart the region"
            }

            // A write cut short (a full disk) is cut back off, so the next
            // line does not start in the middle of this one.
            let start = lseek(file.descriptor, 0, SEEK_END)
            if let reason = Self.writeAll(bytes, to: file.descriptor) {
                if start >= 0 { _ = ftruncate(file.descriptor, start) }
                return reason
            }
            file.lineCount += lines.count

            let due: Bool
            switch policy {
            case .always: due = true
            case .periodic(let interval): due = now - file.lastSyncMilliseconds >= interval.wholeMilliseconds
            }
            guard due else { return nil }
            guard fsync(file.descriptor) == 0 else {
                let reason = "fsync failed: \(String(cString: strerror(errno)))"
                file.failedSync = reason
                return reason
            }
            file.lastSyncMilliseconds = now
            return nil
        }
        if let failure { throw BillingError(.logFailed, "write to the usage log \(path) failed: \(failure)") }
    }

    /// Writes every byte, retrying short writes, and returns the failure, if any.
    private static func writeAll(_ bytes: [UInt8], to descriptor: Int32) -> String? {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { return "write failed: \(String(cString: strerror(errno)))" }
            offset += written
        }
        return nil
    }

    /// Forces the rename into the directory to disk. A failure only weakens
    /// durability against a machine crash, so it is ignored.
    private static func syncDirectory(of path: String) {
        let directory = (path as NSString).deletingLastPathComponent
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        fsync(descriptor)
        close(descriptor)
    }

    // MARK: Lines

    private static func recordedLine(_ record: UsageRecord) -> [UInt8] {
        var fields: [String: JSONValue] = [
            "tenant": .string(record.tenant.rawValue), "requestId": .string(record.requestID), "tokens": .integer(record.tokens),
        ]
        if let model = record.model { fields["model"] = .string(model) }
        var line = JSONValue.object(["recorded": .object(fields)]).serializedBytes()
        line.append(UInt8(ascii: "\n"))
        return line
    }

    private static func flushedLine(tenant: TenantID, requestIDs: [String]) -> [UInt8] {
        let fields: [String: JSONValue] = ["tenant": .string(tenant.rawValue), "requestIds": .array(requestIDs.map(JSONValue.string))]
        var line = JSONValue.object(["flushed": .object(fields)]).serializedBytes()
        line.append(UInt8(ascii: "\n"))
        return line
    }

    /// Reads the log at `path` (nothing when it does not exist), truncating a
    /// torn last line.
    private static func recover(path: String) throws(BillingError) -> Recovered {
        guard FileManager.default.fileExists(atPath: path) else { return Recovered() }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw BillingError(.logFailed, "cannot read the usage log \(path)")
        }
        let bytes = Array(data)

        var order: [UsageRecordIdentity] = []
        var records: [UsageRecordIdentity: UsageRecord] = [:]
        var flushedOrder: [UsageRecordIdentity] = []
        var flushed: Set<UsageRecordIdentity> = []
        var lineStart = 0
        var lineNumber = 0
        while let newline = bytes[lineStart...].firstIndex(of: UInt8(ascii: "\n")) {
            lineNumber += 1
            let line = Array(bytes[lineStart..<newline])
            lineStart = newline + 1

            switch parseLine(line) {
            case .recorded(let record)?:
                if records[record.identity] == nil { order.append(record.identity) }
                records[record.identity] = record
            case .flushed(let tenant, let requestIDs)?:
                for requestID in requestIDs {
                    let identity = UsageRecordIdentity(tenant: tenant, requestID: requestID)
                    // A flushed line may name a record that compaction
                    // forgot; there is nothing to restore for it.
                    if records[identity] != nil, flushed.insert(identity).inserted {
                        flushedOrder.append(identity)
                    }
                }
            case nil:
                throw BillingError(
                    .logFailed,
                    "line \(lineNumber) of the usage log \(path) is not a valid entry, so the log is corrupt. Repair the line by hand, because moving the file aside loses its unflushed records."
                )
            }
        }

        // Bytes after the last newline are a write that the crash cut short.
        // Its record was never accepted, so dropping it loses nothing.
        if lineStart < bytes.count {
            guard truncate(path, off_t(lineStart)) == 0 else {
                throw BillingError(
                    .logFailed, "cannot truncate a torn last line of the usage log \(path): \(String(cString: strerror(errno)))")
            }
        }

        var recovered = Recovered(lineCount: lineNumber)
        recovered.pending = order.filter { !flushed.contains($0) }.compactMap { records[$0] }
        recovered.flushed = flushedOrder.compactMap { records[$0] }
        return recovered
    }

    private enum Line {
        case recorded(UsageRecord)
        case flushed(TenantID, [String])
    }

    private static func parseLine(_ line: [UInt8]) -> Line? {
        guard let value = try? JSONValue.parse(line) else { return nil }

        if let fields = value["recorded"] {
            guard let tenant = fields["tenant"]?.stringValue.flatMap(TenantID.init), let requestID = fields["requestId"]?.stringValue,
                let tokens = fields["tokens"]?.integerValue,
                let record = try? UsageRecord(tenant: tenant, requestID: requestID, model: fields["model"]?.stringValue, tokens: tokens)
            else { return nil }
            return .recorded(record)
        }

        if let fields = value["flushed"] {
            guard let tenant = fields["tenant"]?.stringValue.flatMap(TenantID.init),
                let requestIDs = fields["requestIds"]?.arrayValue?.compactMap(\.stringValue)
            else { return nil }
            return .flushed(tenant, requestIDs)
        }
        return nil
    }
}
