-- Whether a ticket is the first live one. Reads only.
-- ARGV[2]: ticket number, ARGV[3]: ticket epoch or -1.
-- Returns 1 or 0.
return run(function()
  local number = tonumber(ARGV[2])
  local epoch = tonumber(ARGV[3])
  local now = clock_us()
  local rec = load()
  if not rec or not same_epoch(rec, epoch) then
    return 0
  end
  prune(rec, now)
  local head = rec.tickets[1]
  if head and head.number == number then
    return 1
  end
  return 0
end)
