-- The waiter's look and keep-alive. Acquires when the ticket holds the
-- grant (claiming a provisional one: the lease then runs a lifetime from
-- now); otherwise extends the ticket's life only when less than two thirds
-- of its lifetime is left, so that a look finding nothing changed writes
-- nothing.
-- ARGV[2]: ticket number, ARGV[3]: epoch or -1, ARGV[4]: lifetime µs,
-- ARGV[5]: the claim window of a provisional grant, µs.
-- Returns {0, token, lease µs} acquired, {1, ahead, holder remaining µs
-- or -1} queued, {2} lost.
general()
local number, epoch, lifetime, claim, now = ticket_args(ARGV)
local st = load(now)
if not st or not same_epoch(st, epoch) then
  return { 2 }
end
local m = int(number)
local pruned = prune(st, now, 8)
local score = redis.call('ZSCORE', X, m)
if not score or tonumber(score) < now then
  if pruned > 0 then
    advance(st, now, claim, nil)
    touch(st, now)
  end
  return { 2 }
end
local h = st.h
advance(st, now, claim, number)
if st.h == number then
  local left
  if st.p then
    st.p = false
    redis.call('HDEL', K, 'p')
    expire_at(st, m, now + lifetime)
    left = lifetime
  else
    left = st.hs - now
  end
  if pruned > 0 or h ~= number or left == lifetime then
    touch(st, now)
  end
  return { 0, token(st, number), left }
end
if tonumber(score) - now < lifetime * 2 / 3 then
  expire_at(st, m, now + lifetime)
  touch(st, now)
elseif pruned > 0 or h ~= st.h then
  touch(st, now)
end
return queued(st, number, now)
