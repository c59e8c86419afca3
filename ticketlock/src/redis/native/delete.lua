-- Deletes the conversation; every waiting process is told its tickets
-- are gone ('-' on its channel). A key of another type at K (a rasa-layout record, or
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
-- Each waiting process once, however many tickets it has (the holder
-- alone in K, the uncontended state, has no process to tell).
local told, wakes = {}, {}
for _, m in ipairs(redis.call('ZRANGE', Q, 0, -1)) do
  local wake = waker(m)
  if wake and not told[wake] then
    told[wake] = true
    wakes[#wakes + 1] = wake
  end
end
redis.call('DEL', K, Q, X)
for _, wake in ipairs(wakes) do
  redis.call(PUBLISH, wake, '-')
end
return 1
