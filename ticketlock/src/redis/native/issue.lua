-- Appends a ticket and grants it at once when nobody holds the lock.
-- ARGV[2]: lifetime µs, ARGV[3]: the most tickets the queue may hold,
-- ARGV[4]: how long the request's entry (KEYS[2]) is kept, in ms,
-- ARGV[5]: the claim window of a provisional grant, µs.
-- Returns {number, epoch, status, token or ahead, holder remaining µs or -1}:
-- status 0 = acquired (then the token), 1 = queued (then how many are
-- ahead), 2 = refused, the queue is full (then its length), 3 = a retry
-- whose ticket is gone.
return run(function()
  local lifetime = tonumber(ARGV[2])
  local max_len = tonumber(ARGV[3])
  local request_ttl = tonumber(ARGV[4])
  local claim = tonumber(ARGV[5])
  local now = clock_us()
  local seen = request_seen()
  local st = load()
  if seen then
    -- A retry: answer for the ticket the first attempt made.
    local number, epoch = read_issued(seen)
    if not st or st.e ~= epoch then
      return { number, epoch, 3, 0, -1 }
    end
    prune(st, now, 8)
    if not redis.call('ZSCORE', X, int(number)) then
      touch(now)
      return { number, epoch, 3, 0, -1 }
    end
    if st.h == number then
      return { number, epoch, 0, token(st, number), -1 }
    end
    local answer = queued(st, number, now)
    return { number, epoch, 1, answer[2], answer[3] }
  end
  if not st then
    st = create(now)
  end
  prune(st, now, 8)
  local len = redis.call('ZCARD', Q)
  if len >= max_len then
    -- Expired tickets beyond the usual few may fill it: drop them all first.
    prune(st, now, len)
    len = redis.call('ZCARD', Q)
    if len >= max_len then
      touch(now)
      return { -1, st.e, 2, len, -1 }
    end
  end
  local number = st.n
  st.n = number + 1
  local m = int(number)
  redis.call('HSET', K, 'n', int(st.n), m, int(lifetime))
  redis.call('ZADD', Q, m, m)
  redis.call('ZADD', X, int(now + lifetime), m)
  request_remember(issued_outcome(number, st.e), request_ttl)
  advance(st, now, claim, number)
  touch(now)
  if st.h == number then
    return { number, st.e, 0, token(st, number), -1 }
  end
  local answer = queued(st, number, now)
  return { number, st.e, 1, answer[2], answer[3] }
end)
