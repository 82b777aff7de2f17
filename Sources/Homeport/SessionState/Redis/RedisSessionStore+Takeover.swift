extension RedisSessionStore {
    /// How often a whole-session rewrite retries when another client changed
    /// the session between the read and the write.
    static let rewriteAttempts = 16

    /// Reads the session under WATCH, lets `update` change it, and when
    /// `update` returns `write` true, replaces the session's keys in one
    /// MULTI/EXEC. EXEC fails if any of the keys changed since the WATCH, and
    /// then the whole step runs again on the new state.
    ///
    /// `update` gets nil for a session that is not here, and returns its
    /// result and whether to write. A rule failure it throws writes nothing.
    func rewrite<Value>(
        _ id: SessionID, on connection: RedisConnection,
        _ update: (inout RedisStoredSession?) throws(SessionStoreError) -> (Value, write: Bool)
    ) throws(RedisError) -> Result<Value, SessionStoreError> {
        let sessionKeys = keys.sessionKeys(for: id)
        let watch = [Array("WATCH".utf8)] + sessionKeys.map { Array($0.utf8) }

        for _ in 0..<Self.rewriteAttempts {
            let replies = try connection.pipeline([watch] + RedisStoredSession.loadCommands(sessionKeys))
            if case .error(let message) = replies[0] {
                throw RedisError(.serverError, "Redis failed WATCH on session \(id): \(message)")
            }
            var stored = try RedisStoredSession.decode(Array(replies.dropFirst()), id: id)

            let value: Value
            let write: Bool
            do throws(SessionStoreError) {
                (value, write) = try update(&stored)
            } catch {
                _ = try connection.send([Array("UNWATCH".utf8)])
                return .failure(error)
            }
            guard write, let stored else {
                _ = try connection.send([Array("UNWATCH".utf8)])
                return .success(value)
            }

            let transaction = [[Array("MULTI".utf8)]] + stored.writeCommands(sessionKeys, index: keys.index) + [[Array("EXEC".utf8)]]
            let results = try connection.pipeline(transaction)
            switch results.last {
            case .array(let replies):
                if let failed = replies.first(where: { if case .error = $0 { true } else { false } }), case .error(let message) = failed {
                    throw RedisError(.serverError, "Redis failed a command rewriting session \(id): \(message)")
                }
                return .success(value)
            case .null:
                // Another client wrote to the session after the WATCH.
                continue
            case .error(let message):
                throw RedisError(.serverError, "Redis failed the transaction rewriting session \(id): \(message)")
            default:
                throw RedisError(.unexpectedReply, "EXEC returned no reply array for session \(id)")
            }
        }
        throw RedisError(
            .serverError, "session \(id) changed during each of \(Self.rewriteAttempts) attempts to rewrite it; another client writes to it"
        )
    }

    /// Makes this store the home of a session taken over from a failed region:
    /// builds it from the standby copy with the new home and epoch, writes it,
    /// and records a snapshot of it in the journal. A session that is here
    /// already is returned as it is, so concurrent first requests adopt it once.
    public func adopt(
        _ copy: StandbySession, home: String, epoch: UInt64, replicationGap: Bool
    ) async throws(SessionStoreError) -> SessionInfo {
        let limits = self.limits
        return try await onThread(copy.id) { connection throws(RedisError) in
            let outcome = try self.rewrite(copy.id, on: connection) { stored -> ((SessionInfo, ReplicationEntry?), write: Bool) in
                if let stored { return ((stored.record.info, nil), false) }
                var record = SessionRecord(restoring: copy, limits: limits)
                record.home = home
                record.epoch = epoch
                record.adoptedPosition = copy.appliedStamp
                record.replicationGap = replicationGap
                stored = RedisStoredSession(record: record)
                return ((record.info, record.snapshotEntry), true)
            }
            return outcome.map { info, entry in
                if let entry { self.record(entry) }
                return info
            }
        }
    }

    /// Returns the ids of every session in the store, sorted. Reads the index
    /// with SSCAN, about a thousand ids per command, so that no single
    /// command walks a large set.
    public func sessionIDs() async throws(SessionStoreError) -> [SessionID] {
        let index = keys.index
        return try await onThread(nil) { connection throws(RedisError) in
            var ids: [SessionID] = []
            var cursor = "0"
            repeat {
                let reply = try connection.send(RedisStoredSession.command("SSCAN", index, cursor, "COUNT", "1000"))
                guard let parts = reply.elements, parts.count == 2, let next = parts[0].text, let members = parts[1].elements else {
                    throw RedisError(.unexpectedReply, "SSCAN of \(index) returned \(RedisSessionCodec.preview(reply))")
                }
                for member in members {
                    guard let text = member.text, let id = SessionID(text) else {
                        throw RedisError(.unexpectedReply, "the session index \(index) contains a member that is not a session id")
                    }
                    ids.append(id)
                }
                cursor = next
            } while cursor != "0"
            return .success(Array(Set(ids)).sorted())
        }
    }

    public func adoptedPositions(_ ids: [SessionID]) async throws(SessionStoreError) -> [SessionID: SessionStamp] {
        guard !ids.isEmpty else { return [:] }
        let commands = ids.map { RedisStoredSession.command("HMGET", keys.meta(for: $0), "adoptedEpoch", "adoptedSeq") }
        return try await onThread(nil) { connection throws(RedisError) in
            var positions: [SessionID: SessionStamp] = [:]
            for (id, reply) in zip(ids, try connection.pipeline(commands)) {
                guard let fields = reply.elements, fields.count == 2 else {
                    throw RedisError(.unexpectedReply, "HMGET of session \(id) returned \(RedisSessionCodec.preview(reply))")
                }
                if let stamp = Self.stamp(fields[0], fields[1]) { positions[id] = stamp }
            }
            return .success(positions)
        }
    }

    public func mergeReconcileTail(
        _ tail: ReconcileTail, standby: StandbySession?, home: String
    ) async throws(SessionStoreError) -> Int {
        let limits = self.limits
        let id = tail.session
        return try await onThread(id) { connection throws(RedisError) in
            let outcome = try self.rewrite(id, on: connection) {
                (stored) throws(SessionStoreError) -> ((Int, ReplicationEntry?), write: Bool) in
                var session: RedisStoredSession
                if let stored {
                    session = stored
                } else if let standby, standby.id == id {
                    var record = SessionRecord(restoring: standby, limits: limits)
                    record.home = home
                    record.epoch = standby.epoch + 1
                    record.adoptedPosition = standby.appliedStamp
                    session = RedisStoredSession(record: record)
                } else {
                    session = RedisStoredSession(
                        record: SessionRecord(
                            id: id, tenant: tail.tenant, home: home, epoch: tail.lastStamp.epoch + 1,
                            createdAtMilliseconds: tail.createdAtMilliseconds))
                }
                let added = stored == nil

                guard session.record.tenant == tail.tenant else {
                    throw SessionStoreError(.invalidWrite, session: id, "the reconcile tail names another tenant than session \(id)")
                }
                let held = session.record.adoptedPosition?.seq ?? 0
                guard tail.isComplete || tail.sinceSeq <= held else {
                    throw SessionStoreError(
                        .reconcilePositionUnknown, session: id,
                        "the tail starts after seq \(tail.sinceSeq), but this region holds session \(id) only up to seq \(held); ask for positions again"
                    )
                }

                let changed = session.record.merge(tail, limits: limits)
                let entry = changed > 0 || added ? session.record.snapshotEntry : nil
                stored = session
                // The merge always clears the gap and may raise the adopted
                // position, so the session is written even when no record changed.
                return ((changed, entry), true)
            }
            return outcome.map { changed, entry in
                if let entry { self.record(entry) }
                return changed
            }
        }
    }

    /// Removes every session of this store's key prefix, a batch of 500 at a
    /// time (each batch in one MULTI/EXEC), then empties the journal's log.
    public func removeAllSessions() async throws(SessionStoreError) {
        let keys = self.keys
        try await onThread(nil) { connection throws(RedisError) -> Result<Void, SessionStoreError> in
            while true {
                let reply = try connection.send(RedisStoredSession.command("SRANDMEMBER", keys.index, "500"))
                guard let members = reply.elements else {
                    throw RedisError(.unexpectedReply, "SRANDMEMBER of \(keys.index) returned \(RedisSessionCodec.preview(reply))")
                }
                let names = members.compactMap(\.text)
                if names.isEmpty { return .success(()) }

                var transaction: [[[UInt8]]] = [[Array("MULTI".utf8)]]
                for name in names {
                    if let id = SessionID(name) {
                        transaction.append([Array("DEL".utf8)] + keys.sessionKeys(for: id).map { Array($0.utf8) })
                    }
                }
                transaction.append([Array("SREM".utf8), Array(keys.index.utf8)] + names.map { Array($0.utf8) })
                transaction.append([Array("EXEC".utf8)])
                let results = try connection.pipeline(transaction)
                if case .error(let message)? = results.last {
                    throw RedisError(.serverError, "Redis failed to remove sessions: \(message)")
                }
            }
        }

        do throws(SessionLogError) {
            try resetJournalLog()
        } catch {
            throw SessionStoreError(
                .notDurable, session: nil, "the session log could not be emptied after reconcile (\(error.detail)); restart the node")
        }
    }
}
