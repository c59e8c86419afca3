-- Appends a ticket and grants it at once when nobody holds the lock.
-- ARGV[2]: lifetime µs, ARGV[3]: `<most> <entry ms>`: the most tickets the
-- queue may hold (the client sends at least 1) and how long the request's
-- entry is kept, in ms (the claim window of a provisional grant is as
-- long, in µs), ARGV[4]: the request id, ARGV[5]: the wake id of the
-- issuing process (its channel carries the ticket's grant).
-- Returns the epoch alone (an integer) when the issue created the
-- conversation and holds it with ticket 0 (its token is the epoch), else
-- {number, epoch, status, token or ahead, holder remaining µs or -1}:
-- status 0 = acquired (then the token), 1 = queued (then how many are
-- ahead), 2 = refused, the queue is full (then its length), 3 = a retry
-- whose ticket is gone.
--
-- A retry is known by the request id: in K's field `r` when the first
-- attempt created the conversation, else in the request's entry
-- (P .. 'rq:<request id>'). A retry that finds no conversation is served
-- as a new request: its first attempt's ticket, if it made one, is gone
-- with the conversation.
local now = clock_us()
if redis.call('EXISTS', K) == 0 then
  -- Uncontended: a new conversation held by its ticket 0, in K alone
  -- (`n` = 1 and `h` = 0 implied by `x`, see common.lua).
  local lifetime = tonumber(ARGV[2])
  redis.call('HSET', K, 'e', int(now), 'x', int(now + lifetime), 'r', ARGV[4])
  redis.call('PEXPIRE', K, int(math.floor(lifetime / 1000) + 1000))
  return now
end
general()
local lifetime = tonumber(ARGV[2])
local most, request_ttl = string.match(ARGV[3], '^(%d+) (%d+)$')
local max_len = tonumber(most)
local claim = tonumber(request_ttl) * 1000
local request_id = ARGV[4]
REQUEST = P .. 'rq:' .. request_id
local st = load_raw(true)
local seen
if st and st.r == request_id then
  seen = '0 ' .. int(st.e)
elseif st then
  seen = request_seen()
end
if st then
  materialize(st, now)
end
if seen then
  -- A retry: answer for the ticket the first attempt made.
  local number, epoch = read_issued(seen)
  if st.e ~= epoch then
    return { number, epoch, 3, 0, -1 }
  end
  prune(st, now, 8)
  if not redis.call('ZSCORE', X, int(number)) then
    advance(st, now, claim, nil)
    touch(st, now)
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
    advance(st, now, claim, nil)
    touch(st, now)
    return { -1, st.e, 2, len, -1 }
  end
end
-- The new ticket's place: every ticket in Q is below it, less those the
-- grant below drops.
local dropped = st.dropped or 0
local number = st.n
st.n = number + 1
local m = int(number)
redis.call('HSET', K, 'n', int(st.n), m, int(lifetime), 'w' .. m, ARGV[5])
redis.call('ZADD', Q, m, m)
expire_at(st, m, now + lifetime)
request_remember(issued_outcome(number, st.e), request_ttl)
advance(st, now, claim, number)
touch(st, now)
if st.h == number then
  return { number, st.e, 0, token(st, number), -1 }
end
return { number, st.e, 1, len - ((st.dropped or 0) - dropped), holder_remaining(st, now) }
