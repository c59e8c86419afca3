-- Extends the holder's lease to a lifetime from now.
-- ARGV[2]: ticket number, ARGV[3]: epoch or -1, ARGV[4]: lifetime µs,
-- ARGV[5]: the claim window, µs. Returns 1 when renewed, 0 when the ticket
-- is not the live holder.
general()
local number, epoch, lifetime, claim, now = ticket_args(ARGV)
local st = load_raw(false)
if not st or not same_epoch(st, epoch) then
  return 0
end
if st.x and st.h == number and st.x >= now then
  -- Uncontended: the holder alone, in K.
  redis.call('HSET', K, 'x', int(now + lifetime))
  redis.call('PEXPIRE', K, int(math.floor(lifetime / 1000) + 1000))
  return 1
end
materialize(st, now)
local pruned = prune(st, now, 8)
local score = redis.call('ZSCORE', X, int(number))
if st.h ~= number or not score or tonumber(score) < now then
  if pruned > 0 then
    advance(st, now, claim, nil)
    touch(st, now)
  end
  return 0
end
local m = int(number)
expire_at(st, m, now + lifetime)
redis.call('HSET', K, m, int(lifetime))
if st.p then
  st.p = false
  redis.call('HDEL', K, 'p')
end
touch(st, now)
return 1
