-- Acquires with a ticket of ours if it is the first live one and no other
-- of ours holds (its lease then runs for a lifetime from now); otherwise
-- keeps it alive, but only when less than 2/3 of `lifetime` is left: a look
-- that finds nothing to change writes nothing (see look() in ours.lua).
-- ARGV[2]: ticket number, ARGV[3]: ticket epoch or -1, ARGV[4]: lifetime us.
-- Returns {0, token} acquired, {1, ahead, holder remaining us} queued, {2}
-- lost; then the number of repairs (see ours.lua).
return run_ours(function()
  local number = tonumber(ARGV[2])
  local epoch = tonumber(ARGV[3])
  local lifetime = tonumber(ARGV[4])
  local now = clock_us()
  local seen = look(now, number, epoch, lifetime)
  if seen then
    return seen
  end
  local st, raw = splice_base(now, epoch, 1)
  local spliced = st and splice().acquire(st, raw, now, number, lifetime, false)
  if spliced then
    return spliced
  end
  local rec, st, changed = full(now)
  local i
  if same_epoch(rec, epoch) then
    i = ours_at(rec, st, number) or adopt(rec, st, number)
  end
  if not i then
    if changed then
      commit(rec, st, now, nil)
    end
    return { 2 }
  end
  local t = rec.tickets[i]
  if st.holder == number or (i == 1 and not st.holder) then
    st.holder = number
    extend_ours(rec, st, t, now, lifetime)
    commit(rec, st, now, number)
    return { 0, token(rec, number, now) }
  end
  if t.hi - now < lifetime * 2 / 3 then
    extend_ours(rec, st, t, now, lifetime)
    changed = true
  end
  if changed then
    commit(rec, st, now, nil)
  end
  return { 1, i - 1, remaining_us(rec.tickets[1], now) }
end)
