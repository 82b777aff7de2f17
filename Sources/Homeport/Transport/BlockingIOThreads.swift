import Foundation

/// A fixed set of threads for blocking calls (socket reads and writes), so
/// that they never occupy the Swift concurrency pool or libdispatch's shared
/// worker threads.
///
/// On Linux the Swift global executor runs on libdispatch's thread pool. If
/// blocking calls filled that pool, the tasks that respond to them could not run.
/// Jobs beyond `threadCount` wait in FIFO order, which also bounds how many
/// connections a client opens at once.
final class BlockingIOThreads: @unchecked Sendable {
    // @unchecked: `jobs` and `stopped` are only touched while `condition` is locked.
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var stopped = false

    init(name: String, threadCount: Int) {
        for index in 0..<threadCount {
            let thread = Thread { [self] in runWorker() }
            thread.name = "\(name)-\(index)"
            thread.start()
        }
    }

    /// Runs `job` on one of the threads, after the jobs queued before it.
    func submit(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Lets the threads exit once the queue is empty.
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    private func runWorker() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopped {
                condition.wait()
            }
            if jobs.isEmpty && stopped {
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }
}
