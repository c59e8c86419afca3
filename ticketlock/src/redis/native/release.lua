-- Removes a live ticket (the holder's release, or a waiter withdrawing)
-- and hands the lock to the next live ticket in the same step (pushed on
-- its channel). A retry answers what the first attempt did (KEYS[2]): the
-- entry is read only when the ticket is not there live, since a first
-- attempt that ran removed it.
-- ARGV[2]: ticket number, ARGV[3]: epoch or -1, ARGV[4]: how long the
-- request's entry is kept, in ms, ARGV[5]: the claim window, µs.
-- Returns 1 when the ticket was there and live, else 0.
return run(function()
  local number = tonumber(ARGV[2])
  local epoch = tonumber(ARGV[3])
  local request_ttl = tonumber(ARGV[4])
  local claim = tonumber(ARGV[5])
  local function earlier()
    return tonumber(request_seen()) or 0
  end
  local now = clock_us()
  local st = load_raw()
  if not st or not same_epoch(st, epoch) then
    return earlier()
  end
  if st.x and st.h == number then
    -- Uncontended: the holder was the only ticket; the conversation goes.
    redis.call('DEL', K, Q, X)
    if st.x >= now then
      request_remember('1', request_ttl)
      return 1
    end
    return 0
  end
  materialize(st, now)
  local pruned = prune(st, now, 8)
  local score = redis.call('ZSCORE', X, int(number))
  local live = score and tonumber(score) >= now
  if score then
    drop(st, number)
  end
  if score or pruned > 0 then
    advance(st, now, claim, nil)
    touch(now)
  end
  if live then
    request_remember('1', request_ttl)
    return 1
  end
  if not score then
    return earlier()
  end
  return 0
end)
