-- Deletes the record (Rasa's delete_lock); everyone waiting is told to
-- look again ("*") and finds its ticket gone. Returns 1 if it existed.
return run(function()
  if type(redis.pcall('GET', KEY)) == 'table' then
    refuse_native()
  end
  if redis.call('DEL', KEY) == 1 then
    redis.call(PUBLISH, KEY, '*')
    return 1
  end
  return 0
end)
