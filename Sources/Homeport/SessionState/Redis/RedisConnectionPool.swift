import Foundation
import Synchronization

/// Dedicated threads that run blocking hiredis calls, each with its own
/// connection, so that no call ever blocks a thread of the Swift concurrency
/// pool (two threads on a two-core machine).
///
/// Each thread (a lane) runs its jobs one at a time in FIFO order. A caller
/// that names a lane gets its jobs run in the order it submitted them. The
/// session store gives every session one lane, so a session's commands run
/// in order and their journal entries are recorded in stamp order.
///
/// Connections are opened on first use and reopened after a failure:
/// - A connection that the server closed while it sat idle (a restart) is
///   noticed before the next command and replaced, so no command is lost to it.
/// - After a failed connect, a timeout or a broken connection, the lane
///   fails its jobs at once with that error for `reconnectDelay`, then tries
///   again. Jobs queued behind a stalled server therefore fail fast instead
///   of each waiting out the command timeout.
final class RedisConnectionPool: Sendable {
    /// The server's address and the connection's timeouts.
    struct Settings: Sendable {
        var host: String
        var port: Int
        var connectTimeout: Duration
        var commandTimeout: Duration
        var reconnectDelay: Duration
    }

    private let lanes: [Lane]
    /// The lane for the next job that names none.
    private let nextLane = Atomic<Int>(0)

    init(settings: Settings, threadCount: Int, name: String, logger: Logger) {
        precondition(threadCount > 0, "a Redis connection pool needs at least one thread")
        lanes = (0..<threadCount).map { index in
            Lane(settings: settings, logger: logger.with(["thread": "\(name)-\(index)"]), threadName: "\(name)-\(index)")
        }
    }

    deinit {
        shutdown()
    }

    var laneCount: Int { lanes.count }

    /// Runs `body` with a connection on the thread of `lane` (any lane when
    /// nil) and returns its result. The calling task is suspended, not
    /// blocked, until the job ran.
    ///
    /// - Throws: `RedisError` from `body`, or the lane's connect error
    ///   (`connectFailed`) when no connection could be opened; after
    ///   `shutdown()`, `connectionLost`.
    func perform<Value: Sendable>(
        lane: Int?, _ body: @escaping @Sendable (RedisConnection) throws(RedisError) -> Value
    ) async throws(RedisError) -> Value {
        let index = lane ?? (nextLane.add(1, ordering: .relaxed).oldValue & Int.max)
        let target = lanes[index % lanes.count]
        let result: Result<Value, RedisError> = await withCheckedContinuation { continuation in
            let accepted = target.submit { connection in
                switch connection {
                case .success(let connection):
                    do throws(RedisError) {
                        continuation.resume(returning: .success(try body(connection)))
                    } catch {
                        continuation.resume(returning: .failure(error))
                    }
                case .failure(let error):
                    continuation.resume(returning: .failure(error))
                }
            }
            if !accepted {
                continuation.resume(returning: .failure(RedisError(.connectionLost, "the Redis session store was shut down")))
            }
        }
        return try result.get()
    }

    /// Lets every thread finish its queued jobs, close its connection and
    /// exit. Jobs submitted afterwards fail. Returns without waiting.
    func shutdown() {
        for lane in lanes {
            lane.stop()
        }
    }
}

/// One thread, its job queue and its connection.
private final class Lane: @unchecked Sendable {
    // @unchecked: `jobs` and `stopped` are touched only while `condition` is
    // locked; the connection state below only by the lane's own thread.
    typealias Job = @Sendable (Result<RedisConnection, RedisError>) -> Void

    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var jobsHead = 0
    private var stopped = false

    private let settings: RedisConnectionPool.Settings
    private let logger: Logger
    private var connection: RedisConnection?
    /// The last failure, returned to jobs until `retryAt`.
    private var failure: RedisError?
    private var retryAt = ContinuousClock.now

    init(settings: RedisConnectionPool.Settings, logger: Logger, threadName: String) {
        self.settings = settings
        self.logger = logger
        let thread = Thread { [self] in run() }
        thread.name = threadName
        thread.start()
    }

    /// Queues a job; returns false once the lane is stopped.
    func submit(_ job: @escaping Job) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !stopped else { return false }
        jobs.append(job)
        condition.signal()
        return true
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    private func next() -> Job? {
        condition.lock()
        defer { condition.unlock() }
        while jobsHead == jobs.count && !stopped {
            condition.wait()
        }
        guard jobsHead < jobs.count else { return nil }
        let job = jobs[jobsHead]
        jobsHead += 1
        // Compact now and then instead of removing from the front each time.
        if jobsHead >= 64 && jobsHead * 2 >= jobs.count {
            jobs.removeFirst(jobsHead)
            jobsHead = 0
        }
        return job
    }

    private func run() {
        // hiredis writes with write(2), which raises SIGPIPE on a connection
        // the server closed; the default action would end the process. Blocked
        // on this thread, the write fails with EPIPE instead.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        while let job = next() {
            let current = usableConnection()
            job(current)
            if case .success(let used) = current, used.isBroken {
                connection = nil
                fail(RedisError(.connectionLost, "the connection to Redis at \(settings.host):\(settings.port) broke during a command"))
            }
        }
        connection = nil
    }

    /// Returns the open connection, or opens one.
    private func usableConnection() -> Result<RedisConnection, RedisError> {
        if let connection {
            if !connection.peerHasClosed() { return .success(connection) }
            self.connection = nil
            logger.info("redis connection closed by the server; reconnecting", ["address": "\(settings.host):\(settings.port)"])
        }

        if let failure, ContinuousClock.now < retryAt {
            return .failure(failure)
        }

        do throws(RedisError) {
            let opened = try RedisConnection(
                host: settings.host, port: settings.port, connectTimeout: settings.connectTimeout,
                commandTimeout: settings.commandTimeout)
            if failure != nil {
                logger.info("redis connection restored", ["address": "\(settings.host):\(settings.port)"])
                failure = nil
            }
            connection = opened
            return .success(opened)
        } catch {
            fail(error)
            return .failure(error)
        }
    }

    /// Records a failure: jobs fail with it until the reconnect delay passed.
    /// Logs only the first failure of an outage, so a down server does not
    /// flood the log.
    private func fail(_ error: RedisError) {
        if failure == nil {
            logger.warning(
                "redis unavailable; failing requests until it reconnects",
                ["address": "\(settings.host):\(settings.port)", "error": error.description])
        }
        failure = error
        retryAt = ContinuousClock.now + settings.reconnectDelay
    }
}
