-- Appends a ticket of ours and tries to acquire with it at once.
-- ARGV[2]: lifetime in microseconds.
-- ARGV[3]: the most tickets the queue may hold (live ones, after pruning).
-- ARGV[4]: how long the request's entry (KEYS[2]) is kept, in ms.
-- Returns {number, epoch or -1, status, token or ahead, holder remaining us or -1,
-- repairs} with status 0 = acquired (then token), 1 = queued (then ahead),
-- 2 = refused because the queue is full (then the queue's length; nothing
-- of ours was added), 3 = a retry whose ticket is gone.
return run_ours(function()
  local lifetime = tonumber(ARGV[2])
  local max_len = tonumber(ARGV[3])
  local request_ttl = tonumber(ARGV[4])
  local now = clock_us()
  local seen = request_seen()
  if not seen then
    local st, raw = splice_base(now, -1, 1)
    local spliced = st and splice().issue(st, raw, now, lifetime, max_len)
    if spliced then
      request_remember(issued_outcome(spliced[1], spliced[2]), request_ttl)
      return spliced
    end
  end
  local rec, st, changed = full(now)
  if seen then
    -- A retry: answer for the ticket the first attempt made, as
    -- try_acquire would (status 3: it is gone); never a second ticket.
    local number, epoch = read_issued(seen)
    local i
    if same_epoch(rec, epoch) then
      i = ours_at(rec, st, number)
    end
    if not i then
      if changed then
        commit(rec, st, now, nil)
      end
      return { number, epoch, 3, 0, -1 }
    end
    extend_ours(rec, st, rec.tickets[i], now, lifetime)
    if st.holder == number or (i == 1 and not st.holder) then
      st.holder = number
      commit(rec, st, now, number)
      return { number, epoch, 0, token(rec, number, now), -1 }
    end
    commit(rec, st, now, nil)
    return { number, epoch, 1, i - 1, remaining_us(rec.tickets[1], now) }
  end
  if not rec.existed and not rec.tickets[1] then
    -- A new incarnation: its epoch is the server time now, so fencing
    -- tokens keep increasing across deletion of the record.
    rec.epoch = now
    st.epoch = now
    rec.last_issued = nil
  end
  if #rec.tickets >= max_len then
    if changed then
      commit(rec, st, now, nil)
    end
    return { -1, rec.epoch or -1, 2, #rec.tickets, -1 }
  end
  local number = 0
  if rec.last_issued then
    number = rec.last_issued + 1
  end
  local ticket = { number = number }
  extend(ticket, now, lifetime)
  append_ours(rec, st, ticket)
  rec.last_issued = number
  st.last_issued = number
  local epoch = rec.epoch or -1
  request_remember(issued_outcome(number, epoch), request_ttl)
  if #rec.tickets == 1 then
    st.holder = number
    commit(rec, st, now, number)
    return { number, epoch, 0, token(rec, number, now), -1 }
  end
  commit(rec, st, now, nil)
  return { number, epoch, 1, #rec.tickets - 1, remaining_us(rec.tickets[1], now) }
end)
