/// A multi-turn conversation rebuilt from a trace that carries no session ids.
public struct TraceSession: Sendable, Equatable {
    /// The index of the session's first request.
    public let id: Int
    /// Indices of the session's requests in arrival order, starting with `id`.
    public var requestIndices: [Int]

    public init(id: Int, requestIndices: [Int]) {
        self.id = id
        self.requestIndices = requestIndices
    }
}

/// Sessions of a trace, and the link from each follow-up request to the request it continues.
public struct RebuiltSessions: Sendable {
    /// Sessions ordered by their first request.
    public let sessions: [TraceSession]
    /// For each request index, the position in `sessions` of the session that contains it.
    public let sessionOfRequest: [Int]
    /// For each request index, the index of the earlier request it continues, or nil for a first turn.
    public let predecessorOfRequest: [Int?]

    /// Number of requests that continue an earlier request.
    public var followUpCount: Int {
        predecessorOfRequest.lazy.filter { $0 != nil }.count
    }

    /// Counts sessions by turn count: the key is a number of requests, the value how many
    /// sessions have exactly that many.
    public func turnCountHistogram() -> [Int: Int] {
        var histogram: [Int: Int] = [:]
        for session in sessions {
            histogram[session.requestIndices.count, default: 0] += 1
        }
        return histogram
    }
}

/// Rebuilds conversations from the prompt-prefix chains in a trace.
///
/// A request's link prefix is its block list without the last block, which may be
/// partial. Request B continues request A when A comes earlier in the trace, A's link
/// prefix has at least two blocks, and that link prefix is a prefix of B's whole block
/// list. Among all such A the rebuilder takes the one with the longest link prefix, and
/// the latest one among equally long link prefixes. A request that continues nothing
/// starts a new session. The two-block minimum keeps block 0, the system prompt that
/// starts every Mooncake request, from linking unrelated conversations.
///
/// Two later requests may continue the same request. Both then join its session, so a
/// session can branch, and its `requestIndices` list the branches merged in arrival order.
public enum SessionRebuilder {
    /// Minimum number of blocks in a link prefix for a later request to continue it.
    static let minimumLinkPrefixBlocks = 2

    /// Rebuilds the sessions of `trace`.
    ///
    /// Runs in expected time linear in the total number of block ids of the trace, using a
    /// hash-based trie of earlier requests' link prefixes.
    public static func rebuild(_ trace: ConversationTrace) -> RebuiltSessions {
        var prefixes = TracePrefixTrie()
        var sessions: [TraceSession] = []
        var sessionOfRequest: [Int] = []
        var predecessorOfRequest: [Int?] = []
        sessionOfRequest.reserveCapacity(trace.requests.count)
        predecessorOfRequest.reserveCapacity(trace.requests.count)

        for request in trace.requests {
            // Look up before inserting, so a request never continues itself or a later one.
            let predecessor = prefixes.latestLongestPrefixOwner(of: request.blockHashes)
            predecessorOfRequest.append(predecessor)

            if let predecessor {
                let position = sessionOfRequest[predecessor]
                sessions[position].requestIndices.append(request.index)
                sessionOfRequest.append(position)
            } else {
                sessionOfRequest.append(sessions.count)
                sessions.append(TraceSession(id: request.index, requestIndices: [request.index]))
            }

            let linkPrefix = request.blockHashes.dropLast()
            if linkPrefix.count >= minimumLinkPrefixBlocks {
                prefixes.insert(linkPrefix, owner: request.index)
            }
        }

        return RebuiltSessions(
            sessions: sessions,
            sessionOfRequest: sessionOfRequest,
            predecessorOfRequest: predecessorOfRequest
        )
    }
}

/// A trie of link prefixes whose nodes record the latest request whose link prefix ends there.
private struct TracePrefixTrie {
    private struct Edge: Hashable {
        var parent: Int
        var blockHash: Int
    }

    private static let root = 0

    private var children: [Edge: Int] = [:]
    /// For each node, the latest request whose link prefix ends at it, or -1.
    private var latestOwner: [Int] = [-1]

    /// Records `owner` as the latest request with link prefix `prefix`.
    mutating func insert(_ prefix: ArraySlice<Int>, owner: Int) {
        var node = Self.root
        for blockHash in prefix {
            let edge = Edge(parent: node, blockHash: blockHash)
            if let child = children[edge] {
                node = child
            } else {
                let child = latestOwner.count
                latestOwner.append(-1)
                children[edge] = child
                node = child
            }
        }
        latestOwner[node] = owner
    }

    /// Returns the latest owner of the longest inserted prefix of `blockHashes`, or nil when
    /// none matches. The whole of `blockHashes` counts as a prefix of itself.
    func latestLongestPrefixOwner(of blockHashes: [Int]) -> Int? {
        var node = Self.root
        var owner: Int?
        for blockHash in blockHashes {
            guard let child = children[Edge(parent: node, blockHash: blockHash)] else {
                break
            }
            node = child
            if latestOwner[node] >= 0 {
                owner = latestOwner[node]
            }
        }
        return owner
    }
}
