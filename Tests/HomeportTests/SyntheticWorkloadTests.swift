import Homeport
import Testing

/// Median of a non-empty list, averaging the two middle values for an even count.
private func syntheticMedian(_ values: [Int]) -> Double {
    let sorted = values.sorted()
    let middle = sorted.count / 2
    if sorted.count % 2 == 1 {
        return Double(sorted[middle])
    }
    return Double(sorted[middle - 1] + sorted[middle]) / 2
}

@Suite("SplitMix64")
struct SplitMix64Tests {
    @Test("seed 1234567 gives reference outputs")
    func referenceOutputs() {
        var random = SplitMix64(seed: 1_234_567)

        let outputs = (0..<5).map { _ in random.next() }

        #expect(
            outputs == [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423,
                4_593_380_528_125_082_431,
                16_408_922_859_458_223_821,
            ]
        )
    }

    @Test("seed 0 first output")
    func seedZero() {
        var random = SplitMix64(seed: 0)

        #expect(random.next() == 0xE220_A839_7B1D_CDAF)
    }

    @Test("copies replay the same sequence")
    func copiesReplay() {
        var original = SplitMix64(seed: 42)
        _ = original.next()
        var copy = original

        #expect((0..<100).map { _ in original.next() } == (0..<100).map { _ in copy.next() })
    }
}

@Suite("SyntheticWorkload")
struct SyntheticWorkloadTests {
    static let publishedRequests = 12_031
    static let publishedFollowUps = 3_974
    static let publishedMedianInputTokens = 6_909.0
    static let publishedMedianOutputTokens = 350.0

    @Test("same seed gives same trace")
    func deterministicForSeed() {
        let first = SyntheticWorkload.generate(seed: 7)
        let second = SyntheticWorkload.generate(seed: 7)

        #expect(first == second)
    }

    @Test("different seeds give different traces")
    func differentSeedsDiffer() {
        let first = SyntheticWorkload.generate(seed: 7)
        let second = SyntheticWorkload.generate(seed: 8)

        #expect(first.requests.count == second.requests.count)
        #expect(first.requests.map(\.inputTokens) != second.requests.map(\.inputTokens))
        #expect(first.requests.map(\.timestampMilliseconds) != second.requests.map(\.timestampMilliseconds))
    }

    @Test("generate matches generateConversations")
    func generateMatchesConversations() {
        let trace = SyntheticWorkload.generate(seed: 3, requestCount: 500, durationMilliseconds: 600_000)
        let conversations = SyntheticWorkload.generateConversations(seed: 3, requestCount: 500, durationMilliseconds: 600_000)

        #expect(trace == conversations.trace)
    }

    @Test("medians within 10% of published", arguments: [1, 2, 3] as [UInt64])
    func mediansMatchPublished(seed: UInt64) {
        let trace = SyntheticWorkload.generate(seed: seed)

        let medianInput = syntheticMedian(trace.requests.map(\.inputTokens))
        let medianOutput = syntheticMedian(trace.requests.map(\.outputTokens))

        #expect(trace.requests.count == Self.publishedRequests)
        let inputTolerance = 0.1 * Self.publishedMedianInputTokens
        let outputTolerance = 0.1 * Self.publishedMedianOutputTokens
        #expect(abs(medianInput - Self.publishedMedianInputTokens) <= inputTolerance, "median prompt \(medianInput)")
        #expect(abs(medianOutput - Self.publishedMedianOutputTokens) <= outputTolerance, "median output \(medianOutput)")
    }

    @Test("follow-up share within 3 points of published", arguments: [1, 2, 3] as [UInt64])
    func followUpShareMatchesPublished(seed: UInt64) {
        let trace = SyntheticWorkload.generate(seed: seed)

        let rebuilt = SessionRebuilder.rebuild(trace)
        let share = Double(rebuilt.followUpCount) / Double(trace.requests.count)
        let publishedShare = Double(Self.publishedFollowUps) / Double(Self.publishedRequests)

        #expect(abs(share - publishedShare) <= 0.03, "follow-up share \(share)")
    }

    @Test("turn counts resemble published histogram")
    func turnCountsResemblePublished() {
        let histogram = SessionRebuilder.rebuild(SyntheticWorkload.generate(seed: 1)).turnCountHistogram()
        let sessionCount = Double(histogram.values.reduce(0, +))

        // Published: 6,045, 1,225 and 392 of 8,057 sessions have one, two and three turns.
        let singleShare = Double(histogram[1, default: 0]) / sessionCount
        let twoTurnShare = Double(histogram[2, default: 0]) / sessionCount
        let threeTurnShare = Double(histogram[3, default: 0]) / sessionCount
        #expect(abs(singleShare - 6_045.0 / 8_057.0) <= 0.03, "single-turn share \(singleShare)")
        #expect(abs(twoTurnShare - 1_225.0 / 8_057.0) <= 0.03, "two-turn share \(twoTurnShare)")
        #expect(abs(threeTurnShare - 392.0 / 8_057.0) <= 0.02, "three-turn share \(threeTurnShare)")

        let maximumTurns = histogram.keys.max() ?? 0
        #expect(maximumTurns >= 10)
        #expect(maximumTurns <= 43)
    }

    @Test("rebuild recovers generated sessions", arguments: [1, 2, 3] as [UInt64])
    func rebuildRecoversSessions(seed: UInt64) {
        let generated = SyntheticWorkload.generateConversations(seed: seed)

        let rebuilt = SessionRebuilder.rebuild(generated.trace)

        #expect(rebuilt.sessions == generated.sessions)
        for session in generated.sessions {
            #expect(rebuilt.predecessorOfRequest[session.id] == nil)
            for (earlier, later) in zip(session.requestIndices, session.requestIndices.dropFirst()) {
                #expect(rebuilt.predecessorOfRequest[later] == earlier)
            }
        }
    }

    @Test("follow-up extends previous turn")
    func followUpExtendsPreviousTurn() {
        let generated = SyntheticWorkload.generateConversations(seed: 5)
        let requests = generated.trace.requests

        for session in generated.sessions {
            for (earlier, later) in zip(session.requestIndices, session.requestIndices.dropFirst()) {
                let previous = requests[earlier]
                let next = requests[later]
                #expect(next.inputTokens > previous.inputTokens + previous.outputTokens)
                let fullBlocks = previous.inputTokens / 512
                #expect(Array(next.blockHashes.prefix(fullBlocks)) == Array(previous.blockHashes.prefix(fullBlocks)))
                #expect(next.timestampMilliseconds >= previous.timestampMilliseconds)
            }
        }
    }

    @Test("blocks cover the prompt and start with block 0")
    func blocksCoverPrompt() {
        let trace = SyntheticWorkload.generate(seed: 4)

        for request in trace.requests {
            #expect(request.blockHashes.first == 0)
            #expect(request.blockHashes.count == (request.inputTokens + 511) / 512)
            #expect(request.outputTokens >= 1)
            #expect(request.outputTokens <= 2_000)
        }
    }

    @Test(
        "timestamps ordered within duration",
        arguments: [
            (12_031, 3_540_000),
            (1_000, 10_000),
            (50, 1),
        ] as [(Int, Int)]
    )
    func timestampsOrderedWithinDuration(requestCount: Int, durationMilliseconds: Int) {
        let generated = SyntheticWorkload.generateConversations(
            seed: 11,
            requestCount: requestCount,
            durationMilliseconds: durationMilliseconds
        )
        let timestamps = generated.trace.requests.map(\.timestampMilliseconds)

        #expect(timestamps.count == requestCount)
        #expect(zip(timestamps, timestamps.dropFirst()).allSatisfy { $0 <= $1 })
        #expect(timestamps.allSatisfy { $0 >= 0 })
        #expect(timestamps.allSatisfy { $0 < durationMilliseconds })
        #expect(SessionRebuilder.rebuild(generated.trace).sessions == generated.sessions)
    }

    @Test("small request counts")
    func smallRequestCounts() {
        #expect(SyntheticWorkload.generate(seed: 1, requestCount: 0).requests.isEmpty)

        let single = SyntheticWorkload.generate(seed: 1, requestCount: 1)
        #expect(single.requests.count == 1)
        #expect(single.requests.first?.index == 0)
    }
}
