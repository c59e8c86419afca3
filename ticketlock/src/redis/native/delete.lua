-- Deletes the conversation; every waiter is told its ticket is gone ('-'
-- on its channel). A key of another type at K (a rasa-layout record, or
-- anything else) is removed too, its waiters told to look again ('*' on K,
-- the rasa layout's channel). Returns 1 if something was there.
general()
local kind = redis.call('TYPE', K).ok
if kind == 'none' then
  redis.call('DEL', Q, X)
  return 0
end
if kind ~= 'hash' then
  redis.call('DEL', K, Q, X)
  redis.call(PUBLISH, K, '*')
  return 1
end
local e, h, x = unpack(redis.call('HMGET', K, 'e', 'h', 'x'))
local members = redis.call('ZRANGE', Q, 0, -1)
if x then
  -- Uncontended: the holder alone, in K (ticket 0 unless `h` says).
  members[#members + 1] = h or '0'
end
redis.call('DEL', K, Q, X)
if e then
  local st = { e = tonumber(e) }
  for _, m in ipairs(members) do
    redis.call(PUBLISH, channel(st, tonumber(m)), '-')
  end
end
return 1
