-- Extends the lease of our holder to a lifetime from now, while it is live
-- (a lease that ran out is lost, even if nobody entered since).
-- ARGV[2]: ticket number, ARGV[3]: ticket epoch or -1, ARGV[4]: lifetime us.
-- Returns {1 when renewed else 0, repairs}.
return run_ours(function()
  local number = tonumber(ARGV[2])
  local epoch = tonumber(ARGV[3])
  local lifetime = tonumber(ARGV[4])
  local now = clock_us()
  local st, raw = splice_base(now, epoch, 1)
  if st and splice().acquire(st, raw, now, number, lifetime, true) then
    return 1
  end
  local rec, st, changed = full(now)
  local i
  if same_epoch(rec, epoch) then
    i = ours_at(rec, st, number) or adopt(rec, st, number)
  end
  if i and (st.holder == number or (i == 1 and not st.holder)) then
    st.holder = number
    extend_ours(rec, st, rec.tickets[i], now, lifetime)
    commit(rec, st, now, number)
    return 1
  end
  if changed then
    commit(rec, st, now, nil)
  end
  return 0
end)
