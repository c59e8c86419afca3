-- Removes a live ticket (the holder's release, or a waiter withdrawing)
-- and hands the lock to the next live ticket in the same step (pushed on
-- its channel). A retry answers what the first attempt did (the request's
-- entry, P .. 'rl:<epoch>:<number>'): the entry is read only when the
-- ticket is not there live, since a first attempt that ran removed it.
-- ARGV[2]: the ticket as `<epoch>:<number>` (`-:<number>` without an
-- epoch), the suffix of its entry's name after `rl:`; ARGV[3]: how long
-- the request's entry is kept, in ms (the claim window is as long, in µs);
-- ARGV[4]: the number after the ticket's, the ticket a hand-off most
-- likely grants (its lifetime and wake id come with K's fields, and the
-- walk to the next holder starts there when it is queued, see `advance`).
-- Returns 1 when the ticket was there and live, else 0.
-- Expired tickets are not dropped first, as the other scripts do: the walk
-- to the next live ticket drops the dead ones it meets, and issues and
-- looks drop the rest.
local ticket = ARGV[2]
local request_ttl = ARGV[3]
local after = ARGV[4]
local now = clock_us()
-- Uncontended: the holder, ticket 0, was the only ticket, in K alone (`x`
-- set, `h` implied); the conversation goes. Compared as the text the
-- client sent and K holds, before any other work.
local e, x, h = unpack(hmget('e', 'x', 'h'))
if x and not h and e and (ticket == e .. ':0' or ticket == '-:0') then
  redis.call('DEL', K)
  if tonumber(x) >= now then
    REQUEST = P .. 'rl:' .. ticket
    request_remember('1', request_ttl)
    return 1
  end
  return 0
end
local epoch_text, number_text = string.match(ticket, '^([^:]+):(%d+)$')
local number = tonumber(number_text)
local epoch = tonumber(epoch_text) or -1
-- The rest of the state, with the next ticket's lifetime and wake id.
local rest = {}
if e then
  rest = hmget('n', 'p', 't', after, 'w' .. after)
end
local st = state({ rest[1], e, h, rest[2], x, rest[3] }, false)
general()
REQUEST = P .. 'rl:' .. ticket
-- Not there: what an earlier attempt answered, if one ran.
if not st or not same_epoch(st, epoch) then
  return tonumber(request_seen()) or 0
end
local claim = tonumber(request_ttl) * 1000
materialize(st, now)
-- The ticket after this one: its fields, and whether the walk to the next
-- holder may start there (this ticket holds, see `advance`).
st.ahead = { rest[4], rest[5], text = after, follows_holder = st.h == number }
local score = redis.call('ZSCORE', X, number_text)
local live = score and tonumber(score) >= now
if score then
  drop(st, number)
  advance(st, now, claim, nil)
  touch(st, now)
end
if live then
  request_remember('1', request_ttl)
  return 1
end
if not score then
  return tonumber(request_seen()) or 0
end
return 0
