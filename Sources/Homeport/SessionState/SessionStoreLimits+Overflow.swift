extension SessionStoreLimits {
    /// Returns how many of a session's oldest turns an append of
    /// `contentBytes` must drop to stay within the turn and buffer limits:
    /// 0 when it fits. Every store applies this one rule.
    ///
    /// - Parameters:
    ///   - turnCount: the turns in the buffer now.
    ///   - bufferBytes: their content bytes together.
    ///   - bytesOfTurn: the content bytes of the turn at an index, oldest first.
    /// - Throws: `limitExceeded` when the append does not fit and the
    ///   overflow policy is reject.
    func turnsToDrop(
        session id: SessionID, turnCount: Int, bufferBytes: Int, contentBytes: Int, bytesOfTurn: (Int) -> Int
    ) throws(SessionStoreError) -> Int {
        let overTurns = turnCount + 1 > maximumTurns
        let overBytes = bufferBytes + contentBytes > maximumBufferBytes
        guard overTurns || overBytes else { return 0 }

        guard dropOldestTurns else {
            if overTurns {
                throw SessionStoreError(
                    .limitExceeded, session: id,
                    "session \(id) holds \(turnCount) turns, the maximum; the buffer's overflow policy is reject")
            }
            throw SessionStoreError(
                .limitExceeded, session: id,
                "appending \(contentBytes) bytes would take session \(id) past its buffer limit of \(maximumBufferBytes) bytes; the overflow policy is reject"
            )
        }

        var dropCount = 0
        var remainingBytes = bufferBytes
        while dropCount < turnCount, turnCount - dropCount + 1 > maximumTurns || remainingBytes + contentBytes > maximumBufferBytes {
            remainingBytes -= bytesOfTurn(dropCount)
            dropCount += 1
        }
        return dropCount
    }
}
