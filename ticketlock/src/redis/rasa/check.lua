-- Whether a ticket is the holder. Reads only: our holder is the one our
-- state names while its lease runs (ours.lua), whatever a stale Rasa write
-- did to the record meanwhile; a ticket our state does not know (a record
-- from before it, or save_lock) holds when it is the first live one.
-- ARGV[2]: ticket number, ARGV[3]: ticket epoch or -1.
-- Returns {1 or 0, repairs (always 0)}.
return run_ours(function()
  local number = tonumber(ARGV[2])
  local epoch = tonumber(ARGV[3])
  local now = clock_us()
  local st = state()
  if st then
    if epoch >= 0 and st.epoch and st.epoch ~= epoch then
      return 0
    end
    local lo, hi = live_range(st, number)
    if lo then
      if st.holder == number and not (now > hi) then
        return 1
      end
      return 0
    end
    if is_gone(st, number) then
      return 0
    end
  end
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
