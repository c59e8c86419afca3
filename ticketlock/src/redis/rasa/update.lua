-- Removes the expired tickets (Rasa's update_lock), deleting the record
-- when none is left. Returns how many tickets went.
return run(function()
  local now = clock_us()
  local rec = load()
  if not rec then
    return 0
  end
  local pruned = prune(rec, now)
  if pruned > 0 then
    save(rec, now, nil)
  end
  return pruned
end)
