import Foundation

@testable import Homeport

/// Waits until the process `pid` has exited (gone, or a zombie) or `timeout`
/// has passed, polling /proc every 10 ms; returns true when it has exited.
///
/// Tests use it after SIGKILL instead of `Process.waitUntilExit()`, which
/// waits for Foundation to notice the exit: a test that calls it on one of
/// the two threads of the Swift concurrency pool while another test does the
/// same can wait forever, and a test run once stalled that way.
@discardableResult
func waitForProcessExit(_ pid: Int32, timeout: Duration = .seconds(10)) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ProcessControl.startTime(of: pid) != nil {
        guard ContinuousClock.now < deadline else { return false }
        usleep(10_000)
    }
    return true
}
