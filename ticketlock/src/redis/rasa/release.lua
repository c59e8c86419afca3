-- Removes a live ticket; the record goes when no ticket is left, and the
-- new head (if the head changed) is told. A retry of a release answers
-- what the first attempt did: KEYS[2] remembers a removal (a release that
-- found nothing finds nothing again, so that needs no entry).
-- ARGV[2]: ticket number, ARGV[3]: ticket epoch or -1,
-- ARGV[4]: how long the request's entry is kept, in ms.
-- Returns 1 when the ticket was in the queue and live, else 0.
return run(function()
  local number = tonumber(ARGV[2])
  local epoch = tonumber(ARGV[3])
  local request_ttl = tonumber(ARGV[4])
  local seen = request_seen()
  if seen then
    return tonumber(seen)
  end
  local now = clock_us()
  local rec = load()
  if not rec or not same_epoch(rec, epoch) then
    return 0
  end
  local pruned = prune(rec, now)
  local i = index_of(rec, number)
  if i then
    table.remove(rec.tickets, i)
  end
  if i or pruned > 0 then
    save(rec, now, nil)
  end
  if i then
    request_remember('1', request_ttl)
    return 1
  end
  return 0
end)
