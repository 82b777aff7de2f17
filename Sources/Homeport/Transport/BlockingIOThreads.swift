import Foundation

/// Up to a fixed number of threads for blocking calls (socket reads and
/// writes), so that they never occupy the Swift concurrency pool or
/// libdispatch's shared worker threads.
///
/// On Linux the Swift global executor runs on libdispatch's thread pool. If
/// blocking calls filled that pool, the tasks that respond to them could not run.
/// Jobs beyond `threadCount` wait in FIFO order, which also bounds how many
/// connections a client opens at once.
///
/// Threads start when jobs arrive and none is idle, and exit after
/// `idleTimeout` without a job, so a process with many clients (a test run,
/// say) keeps only the threads its recent load needed.
final class BlockingIOThreads: @unchecked Sendable {
    // @unchecked: every stored var is only touched while `condition` is locked.
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var stopped = false
    private var running = 0
    private var idle = 0
    private let name: String
    private let threadCount: Int
    private let idleTimeout: TimeInterval

    init(name: String, threadCount: Int, idleTimeout: Duration = .seconds(10)) {
        self.name = name
        self.threadCount = max(1, threadCount)
        self.idleTimeout = idleTimeout.secondsValue
    }

    /// Runs `job` on one of the threads, after the jobs queued before it.
    func submit(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        let startsThread = jobs.count > idle && running < threadCount
        if startsThread { running += 1 }
        condition.signal()
        let index = running
        condition.unlock()

        if startsThread {
            let thread = Thread { [self] in runWorker() }
            thread.name = "\(name)-\(index)"
            thread.start()
        }
    }

    /// Lets the threads exit once the queue is empty.
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    private func runWorker() {
        condition.lock()
        while true {
            while jobs.isEmpty && !stopped {
                idle += 1
                let woken = condition.wait(until: Date(timeIntervalSinceNow: idleTimeout))
                idle -= 1
                if !woken && jobs.isEmpty { break }
            }
            if jobs.isEmpty {
                running -= 1
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
            condition.lock()
        }
    }
}
