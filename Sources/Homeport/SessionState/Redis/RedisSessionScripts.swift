/// The Lua scripts of `RedisSessionStore`, one per operation. Each script
/// checks every rule before its first write, because Redis does not roll a
/// script back when it returns early or fails.
///
/// Every script gets the nine keys of `RedisSessionKeys.keys(for:)` as KEYS
/// and returns an array whose first element is `ok` or a rule failure:
/// - `ok`, the session's info (`RedisSessionCodec.decodeInfo`), then the
///   operation's results.
/// - a failure code such as `session-not-found` or `turn-limit`, then the
///   values its message needs. `RedisSessionStore` turns it into the
///   `SessionStoreError` the memory store throws for the same case.
///
/// Stamps, byte counts and limits are compared as decimal text or Lua
/// numbers. Lua numbers are doubles, so counts and limits are exact up to
/// 2^53, and sequence numbers are only ever copied or compared as text.
enum RedisSessionScripts {
    /// Helpers every script starts with.
    private static let prelude = """
        local meta, turns, idempotency, idempotencyorder = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
        local ledger, kvrefs, kvexpiry, values, index = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]

        local function exists()
          return redis.call('EXISTS', meta) == 1
        end

        -- The session's info: tenant, home, epoch, last seq, creation time,
        -- buffer bytes, replication-gap flag and turn count.
        local function info()
          local fields = redis.call('HMGET', meta, 'tenant', 'home', 'epoch', 'seq', 'created', 'bytes', 'gap')
          fields[8] = redis.call('LLEN', turns)
          return fields
        end

        -- Takes the session's next stamp and returns its epoch and seq as text.
        -- The seq is read back as text: a Lua number is exact only to 2^53.
        local function next_stamp()
          redis.call('HINCRBY', meta, 'seq', 1)
          local stamp = redis.call('HMGET', meta, 'epoch', 'seq')
          return stamp[1], stamp[2]
        end

        -- Compares two decimal numbers without leading zeros, exactly.
        local function greater(a, b)
          if #a ~= #b then return #a > #b end
          return a > b
        end

        local function int(number)
          return string.format('%d', number)
        end

        -- Runs a command whose trailing arguments are `list`, a thousand at a
        -- time, because unpack is limited by the Lua stack.
        local function in_chunks(command, key, list)
          for first = 1, #list, 1000 do
            redis.call(command, key, unpack(list, first, math.min(first + 999, #list)))
          end
        end

        """

    private static func script(_ name: String, _ body: String) -> RedisScript {
        RedisScript(name: name, source: prelude + body)
    }

    /// ARGV: id, tenant, home, epoch, creation time, maximum sessions.
    /// Adds the session to the index. Returns `ok`, `session-exists` or
    /// `session-limit` with the number of sessions.
    static let create = script(
        "create-session",
        """
        if exists() then return {'session-exists'} end
        local count = redis.call('SCARD', index)
        if count >= tonumber(ARGV[6]) then return {'session-limit', count} end

        -- Keys left without a meta hash hold nothing of a live session.
        redis.call('DEL', turns, idempotency, idempotencyorder, ledger, kvrefs, kvexpiry, values)
        redis.call('HSET', meta, 'tenant', ARGV[2], 'home', ARGV[3], 'epoch', ARGV[4], 'seq', '0',
          'created', ARGV[5], 'bytes', '0', 'gap', '0')
        redis.call('SADD', index, ARGV[1])
        return {'ok', info()}
        """)

    /// ARGV: info only. Returns `ok` and the info, or `session-not-found`.
    static let info = script(
        "session-info",
        """
        if not exists() then return {'session-not-found'} end
        return {'ok', info()}
        """)

    /// ARGV: turn body (JSON), content bytes, has-key flag, idempotency key,
    /// fingerprint, maximum turn bytes, maximum turns, maximum buffer bytes,
    /// drop-oldest flag, idempotency key capacity.
    ///
    /// A key the session has seen returns `ok`, the info, 1 and the stored
    /// turn record, after checking the fingerprint. Otherwise appends the turn
    /// at the next stamp, dropping the oldest turns if the policy allows,
    /// and returns `ok`, the info, 0, epoch and seq.
    static let appendTurn = script(
        "append-turn",
        """
        if not exists() then return {'session-not-found'} end
        local body, bytes, key, fingerprint = ARGV[1], tonumber(ARGV[2]), nil, ARGV[5]
        if ARGV[3] == '1' then key = ARGV[4] end

        -- A retry returns the turn that the key first stored.
        if key then
          local first = redis.call('HGET', idempotency, key)
          if first then
            local epoch, seq, first_fingerprint = string.match(first, '^(%d+) (%d+) (.*)$')
            if first_fingerprint ~= fingerprint then return {'idempotency-key-reused', epoch, seq} end
            -- Retries are usually of a recent turn, so search from the newest.
            local prefix = epoch .. ' ' .. seq .. ' '
            local stop = redis.call('LLEN', turns) - 1
            while stop >= 0 do
              local start = math.max(stop - 63, 0)
              local chunk = redis.call('LRANGE', turns, start, stop)
              for position = #chunk, 1, -1 do
                if string.sub(chunk[position], 1, #prefix) == prefix then
                  return {'ok', info(), 1, chunk[position]}
                end
              end
              stop = start - 1
            end
            return {'idempotency-turn-dropped', epoch, seq}
          end
        end

        if bytes > tonumber(ARGV[6]) then return {'turn-too-large'} end
        local count = redis.call('LLEN', turns)
        local buffer = tonumber(redis.call('HGET', meta, 'bytes'))
        local maximumTurns, maximumBuffer = tonumber(ARGV[7]), tonumber(ARGV[8])
        if count + 1 > maximumTurns or buffer + bytes > maximumBuffer then
          if ARGV[9] ~= '1' then
            if count + 1 > maximumTurns then return {'turn-limit', count} end
            return {'buffer-limit'}
          end
          while count > 0 and (count + 1 > maximumTurns or buffer + bytes > maximumBuffer) do
            local oldest = redis.call('LPOP', turns)
            buffer = buffer - tonumber(string.match(oldest, '^%d+ %d+ (%d+) '))
            count = count - 1
          end
        end

        local epoch, seq = next_stamp()
        redis.call('RPUSH', turns, epoch .. ' ' .. seq .. ' ' .. ARGV[2] .. ' ' .. body)
        redis.call('HSET', meta, 'bytes', int(buffer + bytes))
        if key then
          redis.call('HSET', idempotency, key, epoch .. ' ' .. seq .. ' ' .. fingerprint)
          redis.call('RPUSH', idempotencyorder, key)
          local excess = redis.call('LLEN', idempotencyorder) - tonumber(ARGV[10])
          if excess > 0 then
            in_chunks('HDEL', idempotency, redis.call('LPOP', idempotencyorder, excess))
          end
        end
        return {'ok', info(), 0, epoch, seq}
        """)

    /// ARGV: `all`, `tail` and a count, or `since` and a seq. Returns `ok`,
    /// the info and the selected turn records in order.
    static let readTurns = script(
        "read-turns",
        """
        if not exists() then return {'session-not-found'} end
        local selected
        if ARGV[1] == 'all' then
          selected = redis.call('LRANGE', turns, 0, -1)
        elseif ARGV[1] == 'tail' then
          -- A count past the length reads all: Lua would pass a huge count to
          -- LRANGE in exponent notation, which Redis rejects.
          local count, length = tonumber(ARGV[2]), redis.call('LLEN', turns)
          if count <= 0 then
            selected = {}
          elseif count >= length then
            selected = redis.call('LRANGE', turns, 0, -1)
          else
            selected = redis.call('LRANGE', turns, -count, -1)
          end
        else
          -- A scan, not a search: recovered turns of an older epoch may carry a
          -- higher seq than the new epoch's turns after them.
          selected = {}
          for _, record in ipairs(redis.call('LRANGE', turns, 0, -1)) do
            if greater(string.match(record, '^%d+ (%d+) '), ARGV[2]) then selected[#selected + 1] = record end
          end
        end
        return {'ok', info(), selected}
        """)

    /// ARGV: call id, has-name flag, name, has-arguments flag, arguments
    /// (JSON), status, has-result flag, result (JSON), time, maximum entries,
    /// maximum entry bytes.
    ///
    /// Applies the ledger's rules: status moves forward only, two different
    /// terminal states conflict, the name never changes. Returns `ok`, the
    /// info, 1 or 0 (applied or not) and the entry record after the write.
    static let writeLedgerEntry = script(
        "write-ledger-entry",
        """
        if not exists() then return {'session-not-found'} end
        local ranks = {requested = 0, running = 1, succeeded = 2, failed = 2, cancelled = 2}
        local call, status = ARGV[1], ARGV[6]
        local stored = redis.call('HGET', ledger, call)
        local entry = nil
        if stored then entry = cjson.decode(stored) end

        -- The limit is on the entry as stored: its arguments (kept from the
        -- first write that carried them) plus its result (the latest one).
        local arguments = nil
        if entry and entry.arguments ~= 'null' then arguments = entry.arguments elseif ARGV[4] == '1' then arguments = ARGV[5] end
        local result = nil
        if ARGV[7] == '1' then result = ARGV[8] elseif entry then result = entry.result end
        local payload = 0
        if arguments then payload = payload + #arguments end
        if result then payload = payload + #result end
        if payload > tonumber(ARGV[11]) then return {'ledger-entry-too-large', payload} end

        if not entry then
          if ARGV[2] ~= '1' then return {'ledger-name-missing'} end
          local count = redis.call('HLEN', ledger)
          if count >= tonumber(ARGV[10]) then return {'ledger-limit', count} end
          local epoch, seq = next_stamp()
          entry = {name = ARGV[3], arguments = 'null', status = status, epoch = epoch, seq = seq, updatedAt = ARGV[9]}
          if ARGV[4] == '1' then entry.arguments = ARGV[5] end
          if ARGV[7] == '1' then entry.result = ARGV[8] end
          local record = cjson.encode(entry)
          redis.call('HSET', ledger, call, record)
          return {'ok', info(), 1, record}
        end

        if ARGV[2] == '1' and ARGV[3] ~= entry.name then return {'ledger-name-conflict', entry.name} end
        -- Two different terminal states: the call cannot have ended twice.
        if ranks[entry.status] == 2 and ranks[status] == 2 and entry.status ~= status then
          return {'ledger-terminal-conflict', entry.status}
        end
        -- An older or equal status (a late or repeated write) changes nothing.
        if ranks[status] <= ranks[entry.status] then return {'ok', info(), 0, stored} end

        entry.status = status
        if ARGV[7] == '1' then entry.result = ARGV[8] end
        if entry.arguments == 'null' and ARGV[4] == '1' then entry.arguments = ARGV[5] end
        entry.epoch, entry.seq = next_stamp()
        entry.updatedAt = ARGV[9]
        local record = cjson.encode(entry)
        redis.call('HSET', ledger, call, record)
        return {'ok', info(), 1, record}
        """)

    /// ARGV: call id. Returns `ok`, the info and the entry record or nil.
    static let ledgerEntry = script(
        "read-ledger-entry",
        """
        if not exists() then return {'session-not-found'} end
        return {'ok', info(), redis.call('HGET', ledger, ARGV[1])}
        """)

    /// Returns `ok`, the info and the ledger as call id, record pairs.
    static let ledgerEntries = script(
        "read-ledger",
        """
        if not exists() then return {'session-not-found'} end
        return {'ok', info(), redis.call('HGETALL', ledger)}
        """)

    /// ARGV: time, expiry time, maximum refs, then block and location pairs.
    ///
    /// Removes the refs that expired by `time`, checks the limit on the refs
    /// left plus the new blocks, and stores every pair at one new stamp.
    /// Returns `ok`, the info, then epoch and seq (absent when no pairs came).
    static let putKVCacheRefs = script(
        "put-kv-cache-refs",
        """
        if not exists() then return {'session-not-found'} end
        local now, expiry = ARGV[1], ARGV[2]
        local expired = redis.call('ZRANGEBYSCORE', kvexpiry, '-inf', now)
        if #expired > 0 then
          in_chunks('HDEL', kvrefs, expired)
          redis.call('ZREMRANGEBYSCORE', kvexpiry, '-inf', now)
        end
        if #ARGV < 4 then return {'ok', info()} end

        local seen, added = {}, 0
        for position = 4, #ARGV, 2 do
          local block = ARGV[position]
          if not seen[block] and redis.call('HEXISTS', kvrefs, block) == 0 then added = added + 1 end
          seen[block] = true
        end
        local count = redis.call('HLEN', kvrefs)
        if count + added > tonumber(ARGV[3]) then return {'kv-limit', count, added} end

        local epoch, seq = next_stamp()
        local prefix = epoch .. ' ' .. seq .. ' ' .. expiry .. ' '
        for position = 4, #ARGV, 2 do
          redis.call('HSET', kvrefs, ARGV[position], prefix .. ARGV[position + 1])
          redis.call('ZADD', kvexpiry, expiry, ARGV[position])
        end
        return {'ok', info(), epoch, seq}
        """)

    /// Returns `ok`, the info and every ref (expired ones too) as block,
    /// record pairs.
    static let kvCacheRefs = script(
        "read-kv-cache-refs",
        """
        if not exists() then return {'session-not-found'} end
        return {'ok', info(), redis.call('HGETALL', kvrefs)}
        """)

    /// ARGV: block. Returns `ok`, the info and the ref record or nil.
    static let kvCacheRef = script(
        "read-kv-cache-ref",
        """
        if not exists() then return {'session-not-found'} end
        return {'ok', info(), redis.call('HGET', kvrefs, ARGV[1])}
        """)

    /// ARGV: name, value (JSON), time, maximum value bytes, maximum values.
    /// Returns `ok`, the info, epoch and seq.
    static let putValue = script(
        "put-value",
        """
        if not exists() then return {'session-not-found'} end
        local name, value = ARGV[1], ARGV[2]
        if #value > tonumber(ARGV[4]) then return {'value-too-large', #value} end
        if redis.call('HEXISTS', values, name) == 0 then
          local count = redis.call('HLEN', values)
          if count >= tonumber(ARGV[5]) then return {'value-limit', count} end
        end
        local epoch, seq = next_stamp()
        redis.call('HSET', values, name, epoch .. ' ' .. seq .. ' ' .. ARGV[3] .. ' ' .. value)
        return {'ok', info(), epoch, seq}
        """)

    /// ARGV: name. Returns `ok`, the info and the value record or nil.
    static let value = script(
        "read-value",
        """
        if not exists() then return {'session-not-found'} end
        return {'ok', info(), redis.call('HGET', values, ARGV[1])}
        """)

    /// Returns `ok`, the info and the values as name, record pairs.
    static let values = script(
        "read-values",
        """
        if not exists() then return {'session-not-found'} end
        return {'ok', info(), redis.call('HGETALL', values)}
        """)

    /// Returns `ok`, the info, the turn records, the ledger pairs and the
    /// value pairs, read together for a replication snapshot.
    static let replicatedState = script(
        "read-replicated-state",
        """
        if not exists() then return {'session-not-found'} end
        return {'ok', info(), redis.call('LRANGE', turns, 0, -1), redis.call('HGETALL', ledger), redis.call('HGETALL', values)}
        """)
}
