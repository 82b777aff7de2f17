import Testing

@testable import Homeport

@Suite struct MemorySessionStoreTests {
    @Test("memory store meets the contract", arguments: SessionStoreContract.allCases)
    func contract(_ check: SessionStoreContract) async throws {
        try await check.check { limits, journal in MemorySessionStore(limits: limits, journal: journal) }
    }

    @Test func contentHashIsStableAndSensitive() {
        #expect(SessionRecord.contentHash("hello world, a turn") == SessionRecord.contentHash("hello world, a turn"))
        #expect(SessionRecord.contentHash("hello world, a turn") != SessionRecord.contentHash("hello world, a turm"))
        #expect(SessionRecord.contentHash("") != SessionRecord.contentHash("\0"))
    }
}
