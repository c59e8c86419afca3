-- Deletes the record (Rasa's delete_lock) and our state beside it
-- (KEYS[2], ours.lua); everyone waiting is told to look again ("*") and
-- finds its ticket gone. Returns {1 if it existed else 0, repairs}. A
-- native-layout conversation under the key is refused, not half deleted.
return run_ours(function()
  if type(redis.pcall('GET', KEY)) == 'table' then
    refuse_native()
  end
  redis.call('DEL', OURS)
  if redis.call('DEL', KEY) == 1 then
    redis.call(PUBLISH, KEY, '*')
    return 1
  end
  return 0
end)
