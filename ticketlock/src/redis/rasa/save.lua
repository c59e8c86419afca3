-- Replaces the record with the given tickets (Rasa's save_lock), keeping
-- what must survive a rewrite: the highest number issued and the epoch.
-- Everyone waiting is told to look again ("*"). Refuses to overwrite a
-- corrupt record (delete it first). Our state (ours.lua) keeps its
-- released tickets and forgets the rest: the tickets saved are taken for
-- ours again when their owners next call.
-- ARGV[2]: the tickets' list elements, JSON-encoded and joined with ", "
--          (the client renders them exactly as Python would),
-- ARGV[3]: how many tickets, ARGV[4]: the latest expiry (float seconds),
-- ARGV[5]: the highest number among them or -1,
-- ARGV[6]: the lock's last_issued or -1, ARGV[7]: the lock's epoch or -1.
return run_ours(function()
  local count = tonumber(ARGV[3])
  local last_expires = tonumber(ARGV[4])
  local max_number = tonumber(ARGV[5])
  local last_issued = tonumber(ARGV[6])
  local epoch = tonumber(ARGV[7])
  local now = clock_us()
  local old = load()
  local st = state()
  local gone = st and st.gone or ','
  if count == 0 then
    if old then
      redis.call('DEL', KEY)
      redis.call(PUBLISH, KEY, '*')
    end
    redis.call('DEL', OURS)
    return 0
  end
  local issued = math.max(max_number, last_issued)
  if old and old.last_issued and old.last_issued > issued then
    issued = old.last_issued
  end
  if epoch < 0 then
    if st and st.epoch then
      epoch = st.epoch
    elseif old then
      epoch = old.epoch
    else
      epoch = now
    end
  end
  local body = '{"conversation_id": ' .. ID_JSON .. ', "tickets": [' .. ARGV[2] .. ']'
  -- Only when the tickets do not tell it, as save() in common.lua.
  if issued > max_number then
    body = body .. ', "last_issued": ' .. int(issued)
  end
  if epoch then
    body = body .. ', "epoch": ' .. int(epoch)
  end
  body = body .. '}'
  redis.call('SET', KEY, body, 'PX', ttl_ms(last_expires, now))
  local ours = (epoch and int(epoch) or '-') .. ' ' .. int(issued) .. ' - - - - , ' .. gone .. '\n' .. body
  for hi in string.gmatch(gone, ':(%d+),') do
    hi = tonumber(hi) / 1000000
    if hi > last_expires then
      last_expires = hi
    end
  end
  redis.call('SET', OURS, ours, 'PX', ttl_ms(last_expires, now))
  redis.call(PUBLISH, KEY, '*')
  return 1
end)
