-- Spliced writes (prepended after ours.lua): the common changes of a
-- record nobody else wrote since we did, made on its text.
--
-- When the record is byte for byte the copy in our state (no other client
-- wrote since), no ticket in it has expired (our state's lower bound on
-- the earliest expiry is still ahead) and the ticket to change is found by
-- its exact text, the record that full() and commit() would write differs
-- from the stored one only where the change is: issue appends an element
-- before the `]`, release cuts one out, a grant or a keep-alive replaces
-- one. Each is done here with plain finds and substrings (C), without a
-- table per ticket; the result is the same bytes (our tests compare both
-- paths' records), and our state is edited likewise. Anything else (a
-- stale Rasa write, an expired ticket, the last ticket going, the highest
-- number going, a ticket rendered by another client) returns nil and the
-- caller takes the full path.
--
-- Cost: the helpers below are made on first use (splice(), as slow() in
-- common.lua), after splice_base() found that a splice may apply. Every
-- function made in a script's head is made on every call, and each
-- upvalue it takes from the head is looked up in a list as long as the
-- head's captured locals so far: made here, at the end of the head, the
-- splice's functions cost a shallow cycle (a new conversation, or one
-- ticket leaving) about 5% of its server instructions, without its using
-- them (scripts/rasa_script_cost.sh counts them).

-- Our state and the record's text, when the record is the copy we wrote,
-- the state has its bounds, holds at least `least` tickets, none of them
-- has expired, and a ticket of `epoch` (-1: any) may be of it; else nil.
local function splice_base(now, epoch, least)
  local st = state()
  if not st or not st.n or st.n < least or not st.min or not (now + 1 < st.min) then
    return nil
  end
  return unchanged(epoch)
end

-- The spliced writes: {issue, release, acquire} (each takes splice_base's
-- state and text first), made on first use.
local splice_helpers
local function splice()
  if splice_helpers then
    return splice_helpers
  end

  -- Where our live ticket `number` is in the record's text: the first and
  -- last byte of its element, and its lo and hi; or nil. An element starts
  -- with `"{` and nothing else in the list does, so a match is a whole
  -- element.
  -- Also where its entry is in live_text(st): from its leading comma to the
  -- byte before its trailing one.
  local function find_ours(st, raw, number)
    local lo, hi, comma = live_range(st, number)
    if not lo then
      return nil
    end
    local el = ticket_element({ number = number, us = hi })
    local at = find_element(raw, el)
    if not at then
      return nil
    end
    local entry_end = comma + #(int(number) .. ':' .. int(lo) .. ':' .. int(hi))
    return at, at + #el - 1, lo, hi, comma, entry_end
  end

  -- The live list with its part from `x` to `y` (offsets in live_text(st))
  -- replaced by `new`: as the pieces before, `new`, after, so that the
  -- state's text is made in one concatenation (each large string made costs
  -- about a microsecond per kilobyte: hashing it).
  local function live_spliced(st, x, y, new)
    local text, a, b = live_text(st)
    return string.sub(text, a, x - 1), new, string.sub(text, y + 1, b)
  end

  -- How many elements come before the one at `at` (the head's at `s0`, of
  -- `width` bytes): counted near the head, estimated from the offset
  -- deeper (elements being of nearly one length), as look() answers.
  local function elements_before(raw, s0, width, at)
    if at - s0 > 16 * width then
      return math.floor((at - s0) / width + 0.5)
    end
    local before = 0
    local p = string.find(raw, '"{', s0, true)
    while p and p < at do
      before = before + 1
      p = string.find(raw, '"{', p + 2, true)
    end
    return before
  end

  -- The head element's width and how long it has left (µs, at least 0;
  -- no ticket has expired: the holder, or the next to be), or nil.
  local function head_of(raw, now)
    local s, e, _, exp = string.find(raw,
      '^"{\\"number\\": (%d+), \\"expires\\": ([%d.e+-]+)}"', #PREFIX + 1)
    if not s then
      return nil
    end
    local remaining = math.ceil(tonumber(exp) * 1000000 - now)
    if remaining < 0 then
      remaining = 0
    end
    return e - s + 1, remaining
  end

  -- Writes the spliced record `body` and our state beside it, as commit()
  -- does (the record until its latest ticket's expiry bound, our state as
  -- long as the record or our latest released ticket).
  -- The live list given as three pieces (see live_spliced).
  local function splice_commit(st, body, now, l1, l2, l3)
    redis.call('SET', KEY, body, 'PX', ttl_ms(st.max / 1000000, now))
    local last = st.max
    local hi = last_hi(st.gone)
    if hi and hi > last then
      last = hi
    end
    local text = (st.epoch and int(st.epoch) or '-') .. ' '
      .. (st.last_issued and int(st.last_issued) or '-') .. ' '
      .. (st.holder and int(st.holder) or '-') .. ' '
      .. int(st.n) .. ' ' .. int(st.min) .. ' ' .. int(st.max) .. ' '
      .. l1 .. l2 .. l3 .. ' ' .. st.gone .. '\n' .. body
    redis.call('SET', OURS, text, 'PX', ttl_ms(last / 1000000, now))
  end

  -- Replaces our ticket's element (at `a` to `b` in the record, its entry
  -- from `comma` to `entry_end` in the live list) with one expiring a
  -- lifetime from now, and writes.
  local function splice_extend(st, raw, a, b, number, lo, comma, entry_end, now, lifetime)
    local us = now + lifetime
    local body = string.sub(raw, 1, a - 1) .. ticket_element({ number = number, us = us })
      .. string.sub(raw, b + 1)
    if us > st.max then
      st.max = us
    end
    local l1, l2, l3 = live_spliced(st, comma + 1, entry_end,
      int(number) .. ':' .. int(lo) .. ':' .. int(us))
    splice_commit(st, body, now, l1, l2, l3)
  end

  -- Issue: our new ticket appended to a queue that has one (`st`, `raw`
  -- from splice_base). Returns the issue's answer {number, epoch, 1,
  -- ahead, holder remaining us}, or nil.
  local function splice_issue(st, raw, now, lifetime, max_len)
    if st.n >= max_len or not st.last_issued then
      return nil
    end
    -- The list's `]`: the last one (no element holds one).
    local from = #raw - 80
    if from <= #PREFIX then
      from = #PREFIX + 1
    end
    local close = string.find(raw, ']', from, true)
    if not close then
      return nil
    end
    local epoch_part = '}'
    if st.epoch then
      epoch_part = string.format(', "epoch": %d}', st.epoch)
    end
    local tail = string.sub(raw, close)
    -- `last_issued` is written when above every number in the queue; the
    -- new ticket's number is the highest issued, so it goes.
    if tail ~= ']' .. epoch_part
      and tail ~= '], "last_issued": ' .. int(st.last_issued) .. epoch_part then
      return nil
    end
    local width, remaining = head_of(raw, now)
    if not width then
      return nil
    end
    local number = st.last_issued + 1
    local us = now + lifetime
    local body = string.sub(raw, 1, close - 1) .. ', '
      .. ticket_element({ number = number, us = us }) .. ']' .. epoch_part
    local ahead = st.n
    st.last_issued = number
    local _, _, live_b = live_text(st)
    local l1, l2, l3 = live_spliced(st, live_b + 1, live_b,
      int(number) .. ':' .. int(us) .. ':' .. int(us) .. ',')
    st.n = st.n + 1
    if us > st.max then
      st.max = us
    end
    if us < st.min then
      st.min = us
    end
    splice_commit(st, body, now, l1, l2, l3)
    return { number, st.epoch or -1, 1, ahead, remaining }
  end

  -- Release of our ticket `number` while others stay (splice_base with
  -- `least` 2) and a higher number is in the queue (else the record's
  -- tail changes: full path). Returns 1, or nil.
  local function splice_release(st, raw, now, number)
    if not st.last_issued or number >= st.last_issued then
      return nil
    end
    local a, b, lo, hi, comma, entry_end = find_ours(st, raw, number)
    if not a then
      return nil
    end
    local body
    local first = a == #PREFIX + 1
    if first then
      if string.sub(raw, b + 1, b + 2) ~= ', ' then
        return nil
      end
      body = string.sub(raw, 1, a - 1) .. string.sub(raw, b + 3)
    else
      if string.sub(raw, a - 2, a - 1) ~= ', ' then
        return nil
      end
      body = string.sub(raw, 1, a - 3) .. string.sub(raw, b + 1)
    end
    local entry_text = int(number) .. ':' .. int(lo) .. ':' .. int(hi)
    -- The entry and its trailing comma.
    local l1, l2, l3 = live_spliced(st, comma + 1, entry_end + 1, '')
    if st.holder == number then
      st.holder = nil
    end
    -- Among the released (hi is ahead: no ticket has expired), as drop_ours.
    local gone = st.gone .. entry_text .. ','
    local _, count = string.gsub(gone, ',', '')
    if count > GONE_KEPT + 1 then
      gone = string.sub(gone, string.find(gone, ',', 2, true))
    end
    st.gone = gone
    st.n = st.n - 1
    splice_commit(st, body, now, l1, l2, l3)
    if first then
      local head = string.match(body, '^"{\\"number\\": (%d+),', #PREFIX + 1)
      if head and tonumber(head) ~= number then
        redis.call(PUBLISH, KEY, head)
      end
    end
    return 1
  end

  -- A look, keep-alive or grant of our ticket `number` (try_acquire; with
  -- `holder_only`, renew: nil unless it holds). Returns {0, token} when it
  -- holds now, {1, ahead, holder remaining us} when it waits (written only
  -- when its keep-alive is due), or nil.
  local function splice_acquire(st, raw, now, number, lifetime, holder_only)
    local a, b, lo, hi, comma, entry_end = find_ours(st, raw, number)
    if not a then
      return nil
    end
    local first = a == #PREFIX + 1
    if st.holder == number or (first and not st.holder) then
      st.holder = number
      splice_extend(st, raw, a, b, number, lo, comma, entry_end, now, lifetime)
      return { 0, (st.epoch or now) + number }
    end
    local width, remaining = head_of(raw, now)
    if holder_only or not width then
      return nil
    end
    if hi - now < lifetime * 2 / 3 then
      splice_extend(st, raw, a, b, number, lo, comma, entry_end, now, lifetime)
    end
    return { 1, elements_before(raw, #PREFIX + 1, width, a), remaining }
  end

  splice_helpers = {
    issue = splice_issue,
    release = splice_release,
    acquire = splice_acquire,
  }
  return splice_helpers
end
