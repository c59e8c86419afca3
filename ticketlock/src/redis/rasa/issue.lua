-- Appends a ticket and tries to acquire with it at once.
-- ARGV[2]: lifetime in microseconds.
-- ARGV[3]: the most tickets the queue may hold (live ones, after pruning).
-- ARGV[4]: how long the request's entry (KEYS[2]) is kept, in ms.
-- Returns {number, epoch or -1, status, token or ahead, holder remaining us or -1}
-- with status 0 = acquired (then token), 1 = queued (then ahead),
-- 2 = refused because the queue is full (then the queue's length; nothing
-- was written), 3 = a retry whose ticket is gone.
return run(function()
  local lifetime = tonumber(ARGV[2])
  local max_len = tonumber(ARGV[3])
  local request_ttl = tonumber(ARGV[4])
  local now = clock_us()
  local seen = request_seen()
  local rec = load()
  if seen then
    -- A retry: answer for the ticket the first attempt made, as
    -- try_acquire would (status 3: it is gone); never a second ticket.
    local number, epoch = read_issued(seen)
    if not rec or not same_epoch(rec, epoch) then
      return { number, epoch, 3, 0, -1 }
    end
    local pruned = prune(rec, now)
    local i = index_of(rec, number)
    if not i then
      if pruned > 0 then
        save(rec, now, nil)
      end
      return { number, epoch, 3, 0, -1 }
    end
    extend(rec.tickets[i], now, lifetime)
    if i == 1 then
      save(rec, now, number)
      return { number, epoch, 0, token(rec, number, now), -1 }
    end
    save(rec, now, nil)
    return { number, epoch, 1, i - 1, remaining_us(rec.tickets[1], now) }
  end
  if not rec then
    -- A new incarnation: its epoch is the server time now, so fencing
    -- tokens keep increasing across deletion of the record.
    rec = { tickets = {}, epoch = now }
  end
  prune(rec, now)
  if #rec.tickets >= max_len then
    return { -1, rec.epoch or -1, 2, #rec.tickets, -1 }
  end
  local number = 0
  if rec.last_issued then
    number = rec.last_issued + 1
  end
  local ticket = { number = number }
  extend(ticket, now, lifetime)
  rec.tickets[#rec.tickets + 1] = ticket
  rec.last_issued = number
  local epoch = rec.epoch or -1
  request_remember(issued_outcome(number, epoch), request_ttl)
  if #rec.tickets == 1 then
    save(rec, now, number)
    return { number, epoch, 0, token(rec, number, now), -1 }
  end
  save(rec, now, nil)
  return { number, epoch, 1, #rec.tickets - 1, remaining_us(rec.tickets[1], now) }
end)
