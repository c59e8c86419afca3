-- Removes the expired tickets (Rasa's update_lock), deleting the record
-- when none is left, and repairs what a stale Rasa write did (ours.lua).
-- Returns {how many tickets went, repairs}.
return run_ours(function()
  local now = clock_us()
  local rec, st, changed = full(now)
  if changed then
    commit(rec, st, now, nil)
  end
  return rec.pruned
end)
