import Testing

@testable import Homeport

@Suite("Hybrid logical clock")
struct GlobalRegisterClockTests {
    static let start: Int64 = 1_800_000_000_000

    func timestamp(_ physical: Int64, _ logical: UInt32) -> HybridTimestamp {
        HybridTimestamp(physicalMilliseconds: physical, logical: logical)
    }

    @Test("local events follow the wall clock")
    func followsWallClock() {
        let wall = ManualClock(startMilliseconds: Self.start)
        let clock = HybridLogicalClock(clock: wall)

        #expect(clock.now() == timestamp(Self.start, 0))
        #expect(clock.now() == timestamp(Self.start, 1))
        wall.advance(by: .milliseconds(5))
        #expect(clock.now() == timestamp(Self.start + 5, 0))
    }

    @Test("wall clock stepping backwards keeps order")
    func wallClockStepsBackwards() {
        let wall = ManualClock(startMilliseconds: Self.start)
        let clock = HybridLogicalClock(clock: wall)
        let before = clock.now()

        // An NTP correction moves the wall clock back by half a second.
        wall.advance(by: .milliseconds(-500))
        let afterStep = [clock.now(), clock.now()]

        #expect(afterStep[0] > before)
        #expect(afterStep[1] > afterStep[0])
        #expect(afterStep[1] == timestamp(Self.start, 2))

        // Until the wall clock passes the old reading, only the counter moves.
        wall.advance(by: .milliseconds(500))
        #expect(clock.now() == timestamp(Self.start, 3))
        wall.advance(by: .milliseconds(1))
        #expect(clock.now() == timestamp(Self.start + 1, 0))
    }

    @Test("timestamp from the future is adopted")
    func futureTimestampAdopted() throws {
        let wall = ManualClock(startMilliseconds: Self.start)
        let clock = HybridLogicalClock(clock: wall)
        _ = clock.now()
        let received = timestamp(Self.start + 5_000, 7)

        let receive = try clock.update(received: received)
        let next = clock.now()

        #expect(receive == timestamp(Self.start + 5_000, 8))
        #expect(next > received)
        #expect(next == timestamp(Self.start + 5_000, 9))

        // Once the wall clock passes the received time, the counter resets.
        wall.advance(by: .milliseconds(5_001))
        #expect(clock.now() == timestamp(Self.start + 5_001, 0))
    }

    @Test("timestamp beyond the drift limit is rejected")
    func driftLimit() throws {
        let wall = ManualClock(startMilliseconds: Self.start)
        let clock = HybridLogicalClock(clock: wall, maximumForwardDrift: .seconds(10))
        let before = clock.now()

        #expect(throws: GlobalStateError.self) {
            try clock.update(received: timestamp(Self.start + 10_001, 0))
        }
        #expect(clock.current == before)
        #expect(clock.now() == timestamp(Self.start, 1))

        // Exactly at the limit is still accepted.
        #expect(try clock.update(received: timestamp(Self.start + 10_000, 0)) == timestamp(Self.start + 10_000, 1))
    }

    @Test("receipt merges counters of equal physical time")
    func equalPhysicalTime() throws {
        let wall = ManualClock(startMilliseconds: Self.start)
        let clock = HybridLogicalClock(clock: wall)
        _ = clock.now()
        _ = clock.now()  // (start, 1)

        #expect(try clock.update(received: timestamp(Self.start, 9)) == timestamp(Self.start, 10))
        #expect(try clock.update(received: timestamp(Self.start, 3)) == timestamp(Self.start, 11))
    }

    @Test("older timestamp still advances the counter")
    func olderTimestamp() throws {
        let wall = ManualClock(startMilliseconds: Self.start)
        let clock = HybridLogicalClock(clock: wall)
        _ = clock.now()

        #expect(try clock.update(received: timestamp(Self.start - 1_000, 4)) == timestamp(Self.start, 1))
        wall.advance(by: .milliseconds(3))
        #expect(try clock.update(received: timestamp(Self.start - 1_000, 4)) == timestamp(Self.start + 3, 0))
    }

    @Test("full logical counter carries into physical")
    func logicalOverflow() throws {
        let wall = ManualClock(startMilliseconds: Self.start)
        let clock = HybridLogicalClock(clock: wall)

        let receive = try clock.update(received: timestamp(Self.start, UInt32.max))

        #expect(receive == timestamp(Self.start + 1, 0))
        #expect(clock.now() == timestamp(Self.start + 1, 1))
    }

    @Test("monotonic under random steps and receipts")
    func randomSchedule() throws {
        let wall = ManualClock(startMilliseconds: Self.start)
        let clock = HybridLogicalClock(clock: wall, maximumForwardDrift: .seconds(2))
        var random = SplitMix64(seed: 42)
        var last = clock.now()

        for _ in 0..<20_000 {
            let roll = random.next() % 10
            switch roll {
            case 0...2:
                // The wall clock moves by -300 to +300 ms.
                wall.advance(by: .milliseconds(Int64(random.next() % 601) - 300))
                continue
            case 3...6:
                let next = clock.now()
                #expect(next > last)
                #expect(next.physicalMilliseconds >= wall.nowMilliseconds())
                last = next
            default:
                let offset = Int64(random.next() % 4_001) - 2_000
                let received = timestamp(wall.nowMilliseconds() + offset, UInt32(random.next() % 5))
                let next = try clock.update(received: received)
                #expect(next > last)
                #expect(next > received)
                #expect(next.physicalMilliseconds >= wall.nowMilliseconds())
                last = next
            }
        }
    }

    @Test("stamps tie-break on region")
    func stampOrder() {
        let same = timestamp(Self.start, 3)
        let east = RegisterStamp(timestamp: same, region: "us-east")
        let west = RegisterStamp(timestamp: same, region: "us-west")
        let later = RegisterStamp(timestamp: timestamp(Self.start, 4), region: "eu-west")

        #expect(east < west)
        #expect(west < later)
        #expect([later, west, east].sorted() == [east, west, later])
    }
}
