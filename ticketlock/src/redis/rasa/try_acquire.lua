-- Acquires with a ticket if it is the first live one (its lease then runs
-- for a lifetime from now); otherwise keeps it alive for another lifetime.
-- ARGV[2]: ticket number, ARGV[3]: ticket epoch or -1, ARGV[4]: lifetime us.
-- Returns {0, token} acquired, {1, ahead, holder remaining us} queued, {2} lost.
return run(function()
  local number = tonumber(ARGV[2])
  local epoch = tonumber(ARGV[3])
  local lifetime = tonumber(ARGV[4])
  local now = clock_us()
  local rec = load()
  if not rec or not same_epoch(rec, epoch) then
    return { 2 }
  end
  local pruned = prune(rec, now)
  local i = index_of(rec, number)
  if not i then
    if pruned > 0 then
      save(rec, now, nil)
    end
    return { 2 }
  end
  extend(rec.tickets[i], now, lifetime)
  if i == 1 then
    save(rec, now, number)
    return { 0, token(rec, number, now) }
  end
  save(rec, now, nil)
  return { 1, i - 1, remaining_us(rec.tickets[1], now) }
end)
