import Foundation

@testable import Homeport

/// Waits until the process `pid` has exited (gone, or a zombie) or `timeout`
/// has passed, polling /proc every 10 ms. Returns true when it has exited.
///
/// Tests use it after SIGKILL instead of `Process.waitUntilExit()`, which
/// waits for Foundation to notice the exit. Two tests that wait that way on
/// both threads of the Swift concurrency pool can wait forever.
@discardableResult
func waitForProcessExit(_ pid: Int32, timeout: Duration = .seconds(10)) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ProcessControl.startTime(of: pid) != nil {
        guard ContinuousClock.now < deadline else { return false }
        usleep(10_000)
    }
    return true
}
