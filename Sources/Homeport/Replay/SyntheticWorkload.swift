import Foundation

/// A generated trace together with the sessions the generator built it from.
public struct SyntheticConversations: Sendable {
    public let trace: ConversationTrace
    /// The generated sessions, ordered by first request, each listing its requests in
    /// arrival order. `SessionRebuilder.rebuild(trace).sessions` equals this list.
    public let sessions: [TraceSession]
}

/// A seeded generator of conversation traces shaped like the Mooncake conversation trace
/// (Kimi production traffic: 12,031 requests in 59 minutes).
///
/// The generator draws sessions until it has `requestCount` requests, cutting the last
/// session short if needed. Each draw uses these distributions, where LN(m, s) is a
/// lognormal with median m and log-space standard deviation s:
///
/// | quantity | distribution | trace statistic it targets |
/// | --- | --- | --- |
/// | turns per session | 1 with probability 0.75, else n in 2...43 with weight n^-3.1 | 6,045 of 8,057 sessions single-turn, 1,225 two-turn, 392 three-turn, maximum 43; about 33% of requests are follow-ups (3,974 of 12,031) |
/// | first prompt | 891 tokens of system prompt plus LN(40, 1.0) with probability 0.15, else LN(6,200, 1.2), at most 120,000 tokens in all | shortest prompt 891 tokens; 10% of prompts under 1,000 tokens |
/// | follow-up prompt | previous prompt + previous output + LN(30, 2.4) new tokens, the new part clamped to 1...32,768 | median prompt 6,909 tokens over all requests |
/// | output | LN(50, 1.3) with probability 0.3, else LN(410, 0.35), clamped to 1...2,000 | median output 350 tokens, maximum 2,000 |
/// | time between turns | LN(124.5 s, 1.05), clamped to 1 s...30 min | median gap between linked turns of 124.5 s |
/// | session start | uniform, so that the whole session fits in the duration | roughly even arrival rate, between about 800 and 1,100 requests in each 5 minutes |
///
/// The mixture weights and medians were fitted by hand so that the generated quartiles
/// of prompt and output length come close to the trace's, not by a formal estimator.
/// When a session's time between turns adds up to more than the duration, the gaps
/// shrink in proportion to fit.
///
/// Prompts are cut into KV-cache blocks of 512 tokens, and block 0 is the system-prompt
/// block shared by every request. Every other block id belongs to one session, and the
/// generator numbers ids in order of first use. A follow-up repeats the previous turn's
/// full blocks and replaces its partial last block with new ones. A multi-turn session's
/// first prompt is redrawn until it spans at least three blocks, because the rebuild rule
/// links only link prefixes of two or more blocks. With these rules `SessionRebuilder`
/// recovers exactly the generated sessions.
///
/// NOTE: In the trace, about one follow-up in ten has fewer prompt tokens than the previous
/// prompt plus its output. A generated follow-up always has at least one token more.
public enum SyntheticWorkload {
    /// Generates a trace of `requestCount` requests with timestamps in `0..<durationMilliseconds`.
    ///
    /// Equal arguments give equal traces on one platform. Other platforms may differ,
    /// because `exp`, `log` and `cos` come from the platform's C library, which may round
    /// differently. Requires `requestCount >= 0` and `durationMilliseconds >= 1`.
    public static func generate(
        seed: UInt64,
        requestCount: Int = 12_031,
        durationMilliseconds: Int = 3_540_000
    ) -> ConversationTrace {
        generateConversations(seed: seed, requestCount: requestCount, durationMilliseconds: durationMilliseconds).trace
    }

    /// Generates the same trace as `generate` for the same arguments, together with its sessions.
    public static func generateConversations(
        seed: UInt64,
        requestCount: Int = 12_031,
        durationMilliseconds: Int = 3_540_000
    ) -> SyntheticConversations {
        precondition(requestCount >= 0, "requestCount must not be negative, got \(requestCount)")
        precondition(durationMilliseconds >= 1, "durationMilliseconds must be at least 1, got \(durationMilliseconds)")

        var random = SplitMix64(seed: seed)
        var turns: [PlannedTurn] = []
        turns.reserveCapacity(requestCount)
        var sessionCount = 0

        while turns.count < requestCount {
            let turnCount = min(SyntheticCalibration.drawTurnCount(using: &random), requestCount - turns.count)
            turns.append(
                contentsOf: planSession(
                    ordinal: sessionCount,
                    turnCount: turnCount,
                    durationMilliseconds: durationMilliseconds,
                    using: &random
                )
            )
            sessionCount += 1
        }

        // Sort into arrival order. Within a session timestamps never decrease, and the turn
        // number keeps each follow-up after the turn it continues when both share a timestamp.
        turns.sort { lhs, rhs in
            (lhs.timestampMilliseconds, lhs.session, lhs.turn) < (rhs.timestampMilliseconds, rhs.session, rhs.turn)
        }

        return assignBlocks(to: turns, sessionCount: sessionCount)
    }

    private struct PlannedTurn {
        var session: Int
        var turn: Int
        var timestampMilliseconds: Int
        var inputTokens: Int
        var outputTokens: Int
    }

    private static func planSession(
        ordinal: Int,
        turnCount: Int,
        durationMilliseconds: Int,
        using random: inout SplitMix64
    ) -> [PlannedTurn] {
        var inputTokens = SyntheticCalibration.drawFirstPromptTokens(using: &random)
        if turnCount > 1 {
            // Redraw until the prompt spans three blocks. A draw succeeds with probability
            // above 0.85, so the attempt limit only guards against an endless loop.
            var attempts = 1
            while inputTokens <= SyntheticCalibration.minimumLinkedPromptTokens && attempts < 1_000 {
                inputTokens = SyntheticCalibration.drawFirstPromptTokens(using: &random)
                attempts += 1
            }
            inputTokens = max(inputTokens, SyntheticCalibration.minimumLinkedPromptTokens + 1)
        }

        var sizes: [(input: Int, output: Int)] = []
        var gaps: [Int] = []
        for turn in 0..<turnCount {
            let outputTokens = SyntheticCalibration.drawOutputTokens(using: &random)
            sizes.append((inputTokens, outputTokens))
            if turn + 1 < turnCount {
                inputTokens += outputTokens + SyntheticCalibration.drawNewMessageTokens(using: &random)
                gaps.append(SyntheticCalibration.drawThinkTimeMilliseconds(using: &random))
            }
        }

        // Shrink the gaps of a session longer than the duration, keeping their proportions.
        let latestStart = durationMilliseconds - 1
        let span = gaps.reduce(0, +)
        if span > latestStart {
            let scale = Double(latestStart) / Double(span)
            gaps = gaps.map { Int((Double($0) * scale).rounded(.down)) }
        }
        let start = random.nextInteger(upTo: latestStart - gaps.reduce(0, +))

        var planned: [PlannedTurn] = []
        var timestamp = start
        for (turn, size) in sizes.enumerated() {
            if turn > 0 {
                timestamp += gaps[turn - 1]
            }
            planned.append(
                PlannedTurn(
                    session: ordinal,
                    turn: turn,
                    timestampMilliseconds: timestamp,
                    inputTokens: size.input,
                    outputTokens: size.output
                )
            )
        }
        return planned
    }

    /// Numbers the turns in arrival order and gives each its block ids, so that a follow-up
    /// repeats the full blocks of the turn before it.
    private static func assignBlocks(to turns: [PlannedTurn], sessionCount: Int) -> SyntheticConversations {
        let blockTokens = SyntheticCalibration.blockTokens
        var nextBlockHash = SyntheticCalibration.systemPromptBlockHash + 1
        var previousTurn: [TraceRequest?] = Array(repeating: nil, count: sessionCount)
        var sessionPosition: [Int?] = Array(repeating: nil, count: sessionCount)
        var sessions: [TraceSession] = []
        var requests: [TraceRequest] = []
        requests.reserveCapacity(turns.count)

        for turn in turns {
            let index = requests.count
            let blockCount = (turn.inputTokens + blockTokens - 1) / blockTokens

            var blockHashes: [Int]
            if let previous = previousTurn[turn.session] {
                // The previous prompt's last block was partial unless the prompt filled it,
                // and the new tokens change it, so only its full blocks carry over.
                blockHashes = Array(previous.blockHashes.prefix(previous.inputTokens / blockTokens))
            } else {
                blockHashes = [SyntheticCalibration.systemPromptBlockHash]
            }
            while blockHashes.count < blockCount {
                blockHashes.append(nextBlockHash)
                nextBlockHash += 1
            }

            let request = TraceRequest(
                index: index,
                timestampMilliseconds: turn.timestampMilliseconds,
                inputTokens: turn.inputTokens,
                outputTokens: turn.outputTokens,
                blockHashes: blockHashes
            )
            requests.append(request)
            previousTurn[turn.session] = request

            if let position = sessionPosition[turn.session] {
                sessions[position].requestIndices.append(index)
            } else {
                sessionPosition[turn.session] = sessions.count
                sessions.append(TraceSession(id: index, requestIndices: [index]))
            }
        }

        return SyntheticConversations(trace: ConversationTrace(requests: requests), sessions: sessions)
    }
}

/// The distributions of `SyntheticWorkload`, with the parameters its doc comment lists.
private enum SyntheticCalibration {
    static let blockTokens = 512
    static let systemPromptBlockHash = 0
    /// Shortest prompt in the Mooncake conversation trace, taken as the system prompt's length.
    static let systemPromptTokens = 891
    static let maximumFirstPromptTokens = 120_000
    /// A prompt of more tokens than this spans at least three blocks, so its block list
    /// without the last block still has the two blocks that the rebuild rule needs.
    static let minimumLinkedPromptTokens = 2 * blockTokens

    static let singleTurnProbability = 0.75
    static let maximumTurns = 43
    static let turnCountExponent = 3.1

    /// Cumulative probabilities of 2...maximumTurns turns, given more than one turn.
    static let multiTurnCumulative: [Double] = {
        let weights = (2...maximumTurns).map { pow(Double($0), -turnCountExponent) }
        let total = weights.reduce(0, +)
        var cumulative: [Double] = []
        var sum = 0.0
        for weight in weights {
            sum += weight
            cumulative.append(sum / total)
        }
        return cumulative
    }()

    static func drawTurnCount(using random: inout SplitMix64) -> Int {
        guard random.nextUnitInterval() >= singleTurnProbability else {
            return 1
        }
        let draw = random.nextUnitInterval()
        let offset = multiTurnCumulative.firstIndex { draw < $0 } ?? (multiTurnCumulative.count - 1)
        return 2 + offset
    }

    static func drawFirstPromptTokens(using random: inout SplitMix64) -> Int {
        let isShort = random.nextUnitInterval() < 0.15
        let userTokens = isShort ? random.nextLognormal(median: 40, sigma: 1.0) : random.nextLognormal(median: 6_200, sigma: 1.2)
        return min(systemPromptTokens + Int(userTokens.rounded()), maximumFirstPromptTokens)
    }

    static func drawNewMessageTokens(using random: inout SplitMix64) -> Int {
        clamp(random.nextLognormal(median: 30, sigma: 2.4), to: 1...32_768)
    }

    static func drawOutputTokens(using random: inout SplitMix64) -> Int {
        let isShort = random.nextUnitInterval() < 0.3
        let tokens = isShort ? random.nextLognormal(median: 50, sigma: 1.3) : random.nextLognormal(median: 410, sigma: 0.35)
        return clamp(tokens, to: 1...2_000)
    }

    static func drawThinkTimeMilliseconds(using random: inout SplitMix64) -> Int {
        clamp(random.nextLognormal(median: 124_500, sigma: 1.05), to: 1_000...1_800_000)
    }

    private static func clamp(_ value: Double, to range: ClosedRange<Int>) -> Int {
        let rounded = value.rounded()
        if rounded <= Double(range.lowerBound) {
            return range.lowerBound
        }
        if rounded >= Double(range.upperBound) {
            return range.upperBound
        }
        return Int(rounded)
    }
}

// The generator draws through these helpers rather than the standard library's
// `random(in:using:)`, whose algorithm the standard library does not promise to keep, so
// that a seed gives the same trace across Swift releases.
extension SplitMix64 {
    /// Uniform in [0, 1), from the top 53 bits of one output.
    fileprivate mutating func nextUnitInterval() -> Double {
        Double(next() >> 11) * 0x1p-53
    }

    /// Uniform in 0...upperBound.
    fileprivate mutating func nextInteger(upTo upperBound: Int) -> Int {
        precondition(upperBound >= 0)
        let value = Int(nextUnitInterval() * Double(upperBound + 1))
        return min(value, upperBound)
    }

    /// Lognormal with the given median and log-space standard deviation, by the Box–Muller transform.
    fileprivate mutating func nextLognormal(median: Double, sigma: Double) -> Double {
        let radius = (-2 * log(1 - nextUnitInterval())).squareRoot()
        let angle = 2 * Double.pi * nextUnitInterval()
        return median * exp(sigma * radius * cos(angle))
    }
}
