-- Shared head of every native script (prepended at build time, after a
-- line naming the publish command, PUBLISH or SPUBLISH).
--
-- KEYS[1]: K, the conversation's hash: `n` = tickets issued so far (the
--          next number), `e` = epoch (server µs at creation), `h` = the
--          granted holder's number (absent: none), `p` = 1 while that
--          grant is provisional (not yet claimed), `x` = the holder's
--          expiry in server µs while it is the only ticket and Q and X do
--          not exist (the uncontended state, see `materialize`; then `n`
--          and `h` are absent and mean 1 and 0), `r` = the request id of
--          the issue that created the conversation (its ticket 0), and per
--          waiting ticket a field `<number>` = its lifetime in µs and a
--          field `w<number>` = the wake id of the process that waits for it
--          (absent for a ticket written by save: nobody to push to).
-- ARGV[1]: P, the prefix of the conversation's other keys and channels,
--          `{T}:K:` (in K's cluster slot, see keys.rs). The scripts name
--          them from it (`general`), never from KEYS: the uncontended fast
--          paths touch K alone and pay for no other name.
-- Q = P .. 'q', ZSET member = number, score = number: FIFO order.
-- X = P .. 'x', ZSET member = number, score = expiry in server µs: a
--          waiter's liveness, the holder's lease end.
-- P .. 'w:' is the prefix of the wake-up channels: one per process
--          waiting on the conversation, `<prefix><wake id>`, which carries
--          the grants and wake-ups of all its tickets (a grant names its
--          ticket: `<number> <token> <lease µs>`).
-- (Issue and release also name the request's entry, REQUEST, for
-- ../request.lua: P .. 'rq:<request id>' and P .. 'rl:<epoch>:<number>'.)
--
-- Every call costs O(log depth): no command here walks the queue, except
-- the inspection scripts (get, delete, save), which read all of it.
-- Numbers are integers in doubles (exact below 2^53: server µs until
-- year 2255 plus numbers); nothing is JSON or float text: numbers go to
-- commands as strings (`int`, or the client's own ARGV text), since a Lua
-- number passed to redis.call is printed as a float.

-- The call's key, prefix and the names made from it: set at the start of
-- every call (bind.lua, then `general`), so that the helpers below can be
-- defined once (in the Functions library, when it is loaded) and serve
-- every call.
local K, P, Q, X, REQUEST

local function int(n)
  return string.format('%d', n)
end

local function clock_us()
  local t = redis.call('TIME')
  return t[1] * 1000000 + t[2]
end

local function corrupt(message)
  error({ ticketlock_error = 'CORRUPT ' .. message })
end

-- The arguments of a call on one ticket (renew, try_acquire): ARGV[2] the
-- ticket number, ARGV[3] its epoch or -1, ARGV[4] the lifetime in µs,
-- ARGV[5] the claim window of a provisional grant in µs; then the
-- server's time in µs.
local function ticket_args(ARGV)
  return tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), clock_us()
end

-- Names Q and X from P: every operation calls it before it leaves
-- the uncontended fast path (bind.lua clears them, so a call that forgot
-- fails instead of touching another conversation's keys).
local function general()
  Q = P .. 'q'
  X = P .. 'x'
end

-- Runs an operation's `main(KEYS, ARGV)` (defined once, like the helpers);
-- the errors of ours (corrupt, other layout) become error replies whose
-- codes the client maps (CORRUPT, LAYOUT).
local function run(main, KEYS, ARGV)
  local ok, result = pcall(main, KEYS, ARGV)
  if ok then
    return result
  end
  if type(result) == 'table' and result.ticketlock_error then
    return redis.error_reply(result.ticketlock_error)
  end
  error(result)
end

-- An HMGET of K's `names`; a string at K is a record of the rasa layout:
-- refused with the LAYOUT error, never read or overwritten.
local function hmget(...)
  local r = redis.pcall('HMGET', K, ...)
  if r.err then
    if string.find(r.err, '^WRONGTYPE') then
      error({ ticketlock_error = 'LAYOUT rasa' })
    end
    error(r)
  end
  return r
end

-- The conversation's state from K's fields `n e h p x t` and, `with_request`,
-- `r` (in that order), or nil when it has none.
-- `st.x` is set in the uncontended state (the holder alone, in K only; `n`
-- and `h` are then 1 and 0 unless stored); `st.t` is the keys' deadline
-- (see `touch`), 0 when not set; `st.r` the request id, when read.
local function state(r, with_request)
  if not r[2] then
    return nil
  end
  local st = { e = tonumber(r[2]), p = r[4] ~= false and r[4] ~= nil, t = tonumber(r[6]) or 0 }
  if with_request then
    st.r = r[7]
  end
  if r[5] then
    st.x = tonumber(r[5])
    st.n = tonumber(r[1] or 1)
    st.h = tonumber(r[3] or 0)
    if not st.x then
      corrupt('`x` is not a number')
    end
  else
    st.n = tonumber(r[1])
    if r[3] then
      st.h = tonumber(r[3])
    end
  end
  if not st.n or not st.e then
    corrupt('`n` or `e` is not a number')
  end
  return st
end

-- The conversation's state, or nil (see `state`); `r`, the creating
-- issue's request id, is read only `with_request` (it costs a string per
-- call).
local function load_raw(with_request)
  if with_request then
    return state(hmget('n', 'e', 'h', 'p', 'x', 't', 'r'), true)
  end
  return state(hmget('n', 'e', 'h', 'p', 'x', 't'), false)
end

-- Sets ticket `m`'s expiry (or the holder's lease end) in X to `score`,
-- and notes the latest expiry the call wrote, for `touch`.
local function expire_at(st, m, score)
  redis.call('ZADD', X, int(score), m)
  if not st.latest or score > st.latest then
    st.latest = score
  end
end

-- The uncontended state (the holder alone, its expiry in K's field `x`,
-- no Q, no X) turned into the general one: the holder in Q and X, which
-- expire one second past the holder's expiry (K's deadline `t` is not set
-- in the uncontended state, so the next `touch` sets all three).
-- Every operation but the uncontended fast paths runs on the general
-- state; this costs a few commands once per contended spell.
local function materialize(st, now)
  if not st.x then
    return
  end
  local m = int(st.h)
  redis.call('ZADD', Q, m, m)
  redis.call('ZADD', X, int(st.x), m)
  redis.call('HSET', K, 'n', int(st.n), 'h', m)
  redis.call('HDEL', K, 'x')
  local ms = int(math.floor(math.max(st.x - now, 0) / 1000) + 1000)
  redis.call('PEXPIRE', Q, ms)
  redis.call('PEXPIRE', X, ms)
  st.x = nil
end

-- The conversation's state in the general form (see `materialize`), or nil.
local function load(now)
  local st = load_raw(false)
  if st then
    materialize(st, now)
  end
  return st
end

-- A new conversation (K must not exist: a hash without `e` is refused).
local function create(now)
  if redis.call('HSET', K, 'n', 0, 'e', int(now)) ~= 2 then
    corrupt('a hash without the field `e`')
  end
  return { n = 0, e = now, p = false, t = 0 }
end

-- Whether `epoch` (-1: any) names this incarnation.
local function same_epoch(st, epoch)
  return epoch < 0 or st.e == epoch
end

-- The wake-up channel of the process waiting for ticket `m` (a number's
-- text), or nil when no process said it waits (a saved ticket).
local function waker(m)
  local w = redis.call('HGET', K, 'w' .. m)
  if w then
    return P .. 'w:' .. w
  end
end

local function token(st, number)
  return st.e + number
end

-- Removes a ticket from Q, X and K; clears the grant if it was the holder.
-- Counts the tickets the call dropped (`st.dropped`, for the issue's place
-- in the queue).
local function drop(st, number)
  local m = int(number)
  st.dropped = (st.dropped or 0) + 1
  redis.call('ZREM', Q, m)
  redis.call('ZREM', X, m)
  if st.h == number then
    st.h = nil
    st.p = false
    redis.call('HDEL', K, m, 'w' .. m, 'h', 'p')
  else
    redis.call('HDEL', K, m, 'w' .. m)
  end
end

-- Drops up to `limit` expired tickets (expired: expiry < now). Returns how
-- many went.
local function prune(st, now, limit)
  local dead = redis.call('ZRANGEBYSCORE', X, '-inf', '(' .. int(now), 'LIMIT', 0, limit)
  for _, m in ipairs(dead) do
    drop(st, tonumber(m))
  end
  return #dead
end

-- Grants the lock to ticket `number` (its lifetime and wake id read with
-- K's fields when `st.ahead` names it). The caller's own ticket (`me`) is
-- answered in the script's reply; any other is pushed on its process's
-- channel: one receiver or more takes the full lease at once, none (its
-- process is gone, or its subscription is down, or no process waits for
-- it) makes the grant provisional, for at most
-- `claim` µs and never past the ticket's own expiry `score` (so a dead
-- waiter lives no longer for being granted), within which a look of its
-- waiter claims it (try_acquire).
local function grant(st, number, now, claim, me, score)
  local m = int(number)
  local fields = st.ahead
  if not fields or fields.text ~= m then
    fields = redis.call('HMGET', K, m, 'w' .. m)
  end
  local lifetime = tonumber(fields[1]) or claim
  -- Any earlier holder was dropped, with its `p` (see `drop`).
  st.h = number
  st.p = false
  if number == me then
    redis.call('HSET', K, 'h', m)
    st.hs = now + lifetime
    expire_at(st, m, st.hs)
    return
  end
  local receivers = 0
  if fields[2] then
    receivers = redis.call(PUBLISH, P .. 'w:' .. fields[2], m .. ' ' .. int(token(st, number)) .. ' ' .. int(lifetime))
  end
  if receivers > 0 then
    redis.call('HSET', K, 'h', m)
    st.hs = now + lifetime
    expire_at(st, m, st.hs)
  else
    st.p = true
    redis.call('HSET', K, 'h', m, 'p', 1)
    st.hs = math.min(score, now + math.min(lifetime, claim))
    expire_at(st, m, st.hs)
    -- The next in line learns the holder's new, early expiry, and looks
    -- then: if nobody claimed the grant, it is the next live one.
    local after = redis.call('ZRANGE', Q, 1, 1)[1]
    local wake = after and waker(after)
    if wake then
      redis.call(PUBLISH, wake, after)
    end
  end
end

-- When nobody live holds the lock: drops the dead tickets at the head of Q
-- and grants the first live one. Each ticket is dropped once, so the walk
-- costs O(1) per ticket over the conversation's life. Notes the holder's
-- expiry (`st.hs`, for `holder_remaining`), or that no ticket is left
-- (`st.empty`, for `touch`).
-- The walk starts at the ticket `st.ahead` names, without reading Q's
-- head, when the release that dropped the holder says it is the number
-- after the holder's and K holds its fields (so it is in Q): no live
-- ticket is ever below the holder (a grant goes to the first live one,
-- and a dead ticket never comes back), so nothing live is below that one.
local function advance(st, now, claim, me)
  if st.h then
    local s = tonumber(redis.call('ZSCORE', X, int(st.h)))
    if s and s >= now then
      st.hs = s
      return
    end
    drop(st, st.h)
  end
  local start = st.ahead
  if not (start and start.follows_holder and start[1]) then
    start = nil
  end
  while true do
    local head
    if start then
      head = start.text
      start = nil
    else
      head = redis.call('ZRANGE', Q, 0, 0)[1]
    end
    if not head then
      st.empty = true
      return
    end
    local s = redis.call('ZSCORE', X, head)
    if s and tonumber(s) >= now then
      grant(st, tonumber(head), now, claim, me, tonumber(s))
      return
    end
    drop(st, tonumber(head))
  end
end

-- After a write. With no ticket left (`advance` found Q empty), the
-- conversation goes. Else every key must live at least one second past the
-- latest expiry the call wrote (`expire_at`): K's field `t` is the keys'
-- deadline (server µs), and only when it falls short are all three set to
-- live twice the remaining time plus a second, so that the writes of the
-- following half of it (most of a conversation's) set no TTL. Removals
-- only ever shorten what the keys need, so they set none either.
local function touch(st, now)
  if st.empty then
    redis.call('DEL', K, Q, X)
    return
  end
  local latest = st.latest
  if not latest or latest + 1000000 <= st.t then
    return
  end
  local left = math.max(latest - now, 0)
  local ms = int(math.floor(left * 2 / 1000) + 1000)
  redis.call('PEXPIRE', K, ms)
  redis.call('PEXPIRE', Q, ms)
  redis.call('PEXPIRE', X, ms)
  st.t = now + tonumber(ms) * 1000
  redis.call('HSET', K, 't', int(st.t))
end

-- µs until the holder's expiry, or -1 without a holder.
local function holder_remaining(st, now)
  if not st.h then
    return -1
  end
  local s = st.hs or tonumber(redis.call('ZSCORE', X, int(st.h)))
  if not s then
    return -1
  end
  return math.max(s - now, 0)
end

-- A queued ticket's answer: {1, ahead, holder remaining µs or -1}.
local function queued(st, number, now)
  return { 1, redis.call('ZRANK', Q, int(number)), holder_remaining(st, now) }
end
