-- Replaces the conversation with the given tickets (Rasa's save_lock):
-- numbers never go back (n stays above every number issued), the epoch is
-- kept (the lock's, else the stored one, else now). As in Rasa's record,
-- the first live ticket holds until its expiry; a ticket kept (by number)
-- keeps its waiting process, and every process that waited for an old
-- ticket is told to look again ('*', once on its channel).
-- ARGV[2]: the lock's last_issued or -1, ARGV[3]: its epoch or -1,
-- ARGV[4]: the claim window µs, then pairs (number, expiry µs) in queue
-- order from ARGV[5].
general()
local last_issued = tonumber(ARGV[2])
local epoch = tonumber(ARGV[3])
local claim = tonumber(ARGV[4])
local now = clock_us()
local old = load(now)
local n = last_issued + 1
-- The waiting processes of the old tickets: by number, and each once.
local waiting, wakes = {}, {}
if old then
  n = math.max(n, old.n)
  if epoch < 0 then
    epoch = old.e
  end
  local told = {}
  for _, m in ipairs(redis.call('ZRANGE', Q, 0, -1)) do
    local w = redis.call('HGET', K, 'w' .. m)
    if w then
      waiting[m] = w
      if not told[w] then
        told[w] = true
        wakes[#wakes + 1] = P .. 'w:' .. w
      end
    end
  end
end
local function tell()
  for _, wake in ipairs(wakes) do
    redis.call(PUBLISH, wake, '*')
  end
end
if epoch < 0 then
  epoch = now
end
redis.call('DEL', K, Q, X)
if #ARGV < 5 then
  tell()
  return 0
end
local st = { n = n, e = epoch, p = false, t = 0 }
local holder
for i = 5, #ARGV, 2 do
  local number = tonumber(ARGV[i])
  local expires = tonumber(ARGV[i + 1])
  st.n = math.max(st.n, number + 1)
  redis.call('ZADD', Q, ARGV[i], ARGV[i])
  redis.call('ZADD', X, ARGV[i + 1], ARGV[i])
  if not st.latest or expires > st.latest then
    st.latest = expires
  end
  redis.call('HSET', K, ARGV[i], int(math.max(expires - now, 1000)))
  local w = waiting[int(number)]
  if w then
    redis.call('HSET', K, 'w' .. ARGV[i], w)
  end
  if not holder and expires >= now then
    holder = number
  end
end
redis.call('HSET', K, 'n', int(st.n), 'e', int(st.e))
-- As in Rasa's record, the first live ticket holds, until its expiry.
if holder then
  redis.call('HSET', K, 'h', int(holder))
end
touch(st, now)
tell()
return 1
