-- Extends the lease of the holder to a lifetime from now, if it is still
-- the first live ticket (a lease that ran out is lost, even if nobody
-- entered since).
-- ARGV[2]: ticket number, ARGV[3]: ticket epoch or -1, ARGV[4]: lifetime us.
-- Returns 1 when renewed, else 0.
return run(function()
  local number = tonumber(ARGV[2])
  local epoch = tonumber(ARGV[3])
  local lifetime = tonumber(ARGV[4])
  local now = clock_us()
  local rec = load()
  if not rec or not same_epoch(rec, epoch) then
    return 0
  end
  local pruned = prune(rec, now)
  local head = rec.tickets[1]
  if head and head.number == number then
    extend(head, now, lifetime)
    save(rec, now, number)
    return 1
  end
  if pruned > 0 then
    save(rec, now, nil)
  end
  return 0
end)
