-- Removes a live ticket of ours; the record goes when no ticket is left,
-- and the new head (if the head changed) is told. The ticket is kept among
-- our released ones until it would have expired, so that a stale Rasa
-- write that brings it back is repaired (ours.lua). A retry of a release
-- answers what the first attempt did: KEYS[2] remembers a removal (a
-- release that found nothing finds nothing again, so that needs no entry).
-- ARGV[2]: ticket number, ARGV[3]: ticket epoch or -1,
-- ARGV[4]: how long the request's entry is kept, in ms.
-- Returns {1 when the ticket was in the queue and live else 0, repairs}.
return run_ours(function()
  local number = tonumber(ARGV[2])
  local epoch = tonumber(ARGV[3])
  local request_ttl = tonumber(ARGV[4])
  local seen = request_seen()
  if seen then
    return tonumber(seen)
  end
  local now = clock_us()
  local st, raw = splice_base(now, epoch, 2)
  if st and splice().release(st, raw, now, number) then
    request_remember('1', request_ttl)
    return 1
  end
  local rec, st, changed = full(now)
  local i
  if same_epoch(rec, epoch) then
    i = ours_at(rec, st, number) or adopt(rec, st, number)
  end
  if i then
    drop_ours(rec, st, i, now)
    commit(rec, st, now, nil)
    request_remember('1', request_ttl)
    return 1
  end
  if changed then
    commit(rec, st, now, nil)
  end
  return 0
end)
