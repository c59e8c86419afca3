-- Drops every expired ticket (Rasa's update_lock) and grants the lock to
-- the next live one if the holder was among them. ARGV[2]: the claim
-- window, µs. Returns how many tickets went.
general()
local claim = tonumber(ARGV[2])
local now = clock_us()
local st = load(now)
if not st then
  return 0
end
local pruned = prune(st, now, redis.call('ZCARD', X))
if pruned > 0 then
  advance(st, now, claim, nil)
  touch(st, now)
end
return pruned
