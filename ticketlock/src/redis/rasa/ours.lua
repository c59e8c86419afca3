-- Our own queue beside Rasa's record (prepended after common.lua).
--
-- Rasa rewrites the whole record from what it read (GET, change, SET), so
-- a stale write of a Rasa process drops tickets of ours that came in since
-- its read, or brings back ones we released. The record is Rasa's to
-- rewrite; this state is not: OURS (the last of KEYS) is
-- `{T}:<record key>:ours`, in the record's slot, a string
--
--   <epoch|-> <last_issued|-> <holder|-> <n|-> <min|-> <max|-> <live> <gone>\n<record>
--
-- n: how many tickets the record holds; min, max: bounds (server µs) on
--   the earliest and the latest expiry among them (min at most, max at
--   least the true one). Written exactly by every full write, kept as
--   bounds by the spliced writes of splice.lua, which need them to know,
--   without reading the record's tickets, that none has expired and how
--   long the record must live. `-` when unknown (save_lock): the next
--   write is a full one.
--
-- live: our tickets in the queue, in queue order, `,n:lo:hi,...,` (`,`
--   when none): lo is the expiry (server µs) the ticket was issued with,
--   hi its current expiry; every copy of it ever written expires in
--   [lo, hi]. The holder is the one of ours that was granted.
-- gone: our tickets released before they expired, `,n:lo:hi,...,`, kept
--   until hi: a copy of one of them that a stale write brings back is
--   dropped.
-- record: the record exactly as we last wrote it. When the record still is
--   that, nobody else wrote since, and it needs no repair.
--
-- Every write of ours goes through full(): the record is read, each ticket
-- told apart (ours: number of a live ticket of ours and expiry in its
-- range; a copy of a released one: dropped; anything else: Rasa's), our
-- live tickets that went missing are put back, and the queue is ordered:
-- our holder first, else a live Rasa head stays first (it may be inside),
-- then Rasa's tickets in their order merged with ours by number (Rasa's
-- first on a tie: a Rasa ticket numbered like one of ours, from a stale
-- read, comes before it). Each repair (a ticket of ours dropped, brought
-- back, or an older copy of one) is counted and answered to the client.

local OURS = KEYS[#KEYS]
local REPAIRS = 0

-- The record's text as GET answers it (nil, or an error table for
-- another type), read once per call: every write of a script comes after
-- its last read.
local RAW, RAW_READ
local function raw_record()
  if not RAW_READ then
    RAW, RAW_READ = redis.pcall('GET', KEY), true
  end
  return RAW
end

-- Our state, or nil when there is none (or it is unreadable: then the
-- record alone is trusted, as before this state existed). Read and parsed
-- once per call (a script's writes come after its reads; the table is
-- changed only on the way to a write).
local STATE, STATE_READ
-- The live list as a string: st.live, made from the state's text on
-- first use (st.live_a to st.live_b) and kept there. (A plain field and
-- an accessor, not a metatable: setmetatable and rawget are C calls, and
-- the metatable a table and a function made on every call.)
local function live_of(st)
  local live = st.live
  if not live then
    live = string.sub(st.text, st.live_a, st.live_b)
    st.live = live
  end
  return live
end

-- The live list as a text and its bounds in it: the state's text while
-- st.live was not made (or set), else st.live.
local function live_text(st)
  local live = st.live
  if live then
    return live, 1, #live
  end
  return st.text, st.live_a, st.live_b
end

-- The head of the state up to its live list: six counts (digits, or `-`
-- when unknown), one space after each; then where the live list starts.
-- One anchored match for all six: each C call costs more here than the
-- few bytes the pattern steps through. A count's digits are made a number
-- by arithmetic (`+ 0`), not by a call to tonumber.
local STATE_HEAD = '^(%d*)%-? (%d*)%-? (%d*)%-? (%d*)%-? (%d*)%-? (%d*)%-? (),'

local function parse_state()
  local s = redis.call('GET', OURS)
  if not s then
    return nil
  end
  -- Plain finds: a pattern such as %S* would step through the long lists
  -- one character at a time.
  local nl = string.find(s, '\n', 1, true)
  if not nl then
    return nil
  end
  local epoch, last_issued, holder, n, min, max, live_a = string.match(s, STATE_HEAD)
  if not live_a or live_a > nl then
    return nil
  end
  -- The live list stays in the text until something needs it as a string
  -- (see live_of): a look or a spliced write reads or edits it in place.
  local sp = string.find(s, ' ', live_a, true)
  if not sp or sp > nl then
    return nil
  end
  local gone = string.sub(s, sp + 1, nl - 1)
  if string.byte(gone) ~= 44 then
    return nil
  end
  return {
    epoch = epoch ~= '' and epoch + 0 or nil,
    last_issued = last_issued ~= '' and last_issued + 0 or nil,
    holder = holder ~= '' and holder + 0 or nil,
    n = n ~= '' and n + 0 or nil,
    min = min ~= '' and min + 0 or nil,
    max = max ~= '' and max + 0 or nil,
    live_a = live_a,
    live_b = sp - 1,
    gone = gone,
    text = s,
    nl = nl,
  }
end

-- Whether `raw` (the record's text, or nil when there is none) is the
-- copy in our state: compared in place, without taking the copy out as a
-- string of its own (each large string made costs about a microsecond per
-- kilobyte).
local function is_copy(st, raw)
  local text, nl = st.text, st.nl
  if type(raw) ~= 'string' then
    return raw == nil and #text == nl
  end
  return #text - nl == #raw and (#raw == 0 or string.find(text, raw, nl + 1, true) == nl + 1)
end

local function state()
  if not STATE_READ then
    STATE, STATE_READ = parse_state(), true
  end
  return STATE
end

-- The head of our state's text, up to and with the newline (see above).
local function state_head(st)
  return (st.epoch and int(st.epoch) or '-') .. ' '
    .. (st.last_issued and int(st.last_issued) or '-') .. ' '
    .. (st.holder and int(st.holder) or '-') .. ' '
    .. (st.n and int(st.n) or '-') .. ' '
    .. (st.min and int(st.min) or '-') .. ' '
    .. (st.max and int(st.max) or '-') .. ' '
    .. live_of(st) .. ' ' .. st.gone .. '\n'
end

-- lo, hi of our live ticket `number`, or nil; then where its entry's
-- leading comma is in live_text(st).
-- (A plain find, then a match anchored there: an unanchored pattern would
-- be tried at every character of a long list.)
local function live_range(st, number)
  local text, a, b = live_text(st)
  local at = string.find(text, ',' .. int(number) .. ':', a, true)
  if not at or at > b then
    return nil
  end
  local lo, hi = string.match(text, '^,%d+:(%d+):(%d+),', at)
  return tonumber(lo), tonumber(hi), at
end

-- `list` with its entry `old` (between commas) replaced by `new`.
local function replace_entry(list, old, new)
  local a, b = string.find(list, ',' .. old .. ',', 1, true)
  if not a then
    return list
  end
  return string.sub(list, 1, a) .. new .. string.sub(list, b)
end

-- The expiry (µs) of the last entry of a list, or nil.
local function last_hi(list)
  return tonumber(string.match(list, ':(%d+),$', #list - 24))
end

local function is_gone(st, number)
  return string.find(st.gone, ',' .. int(number) .. ':', 1, true) ~= nil
end

-- The record as stored (or nil) and its text.
local function read_record()
  local raw = raw_record()
  if type(raw) == 'table' then
    -- Not a string (or another error): load() answers it as it does.
    return load(), nil
  end
  if not raw then
    return nil, nil
  end
  return load_canonical(raw) or slow().load_generic(raw), raw
end

-- The record, repaired from our state and pruned of expired tickets: its
-- tickets of ours carry `ours`, `lo` and `hi`. Also the state (made from
-- the record when there is none) and whether the record must be written.
local function full(now)
  local rec, raw = read_record()
  local st = state()
  if st and is_copy(st, raw) then
    -- Nobody else wrote since we did: nothing to repair, and our state's
    -- strings are edited in place (see entry() and the helpers below).
    rec = rec or { tickets = {} }
    rec.fast = true
    rec.existed = raw ~= nil
    if st.epoch then
      rec.epoch = st.epoch
    end
    if st.last_issued and (not rec.last_issued or st.last_issued > rec.last_issued) then
      rec.last_issued = st.last_issued
    end
    rec.pruned = prune(rec, now)
    if st.holder then
      local _, hi = live_range(st, st.holder)
      if not hi or now > hi then
        st.holder = nil
      end
    end
    if rec.pruned > 0 then
      local kept = {}
      for e, hi in string.gmatch(live_of(st), '(%d+:%d+:(%d+))') do
        if not (now > tonumber(hi)) then
          kept[#kept + 1] = e
        end
      end
      st.live = ',' .. table.concat(kept, ',') .. (#kept > 0 and ',' or '')
    end
    return rec, st, rec.pruned > 0
  end
  local nowf = now / 1000000
  local changed = false
  if not st then
    st = { live = ',', gone = ',' }
    if rec then
      st.epoch = rec.epoch
      st.last_issued = rec.last_issued
    end
  else
    changed = true
  end
  local existed = rec ~= nil
  rec = rec or { tickets = {} }
  local mine, order = {}, {}
  for n, lo, hi in string.gmatch(live_of(st), '(%d+):(%d+):(%d+)') do
    n = tonumber(n)
    mine[n] = { lo = tonumber(lo), hi = tonumber(hi) }
    order[#order + 1] = n
  end
  -- Copies of released tickets, read only when a ticket is not ours.
  local gone
  local function gone_at(n)
    if not gone then
      gone = {}
      for m, lo, hi in string.gmatch(st.gone, '(%d+):(%d+):(%d+)') do
        m, lo, hi = tonumber(m), tonumber(lo), tonumber(hi)
        local g = gone[m]
        if g then
          g.lo = math.min(g.lo, lo)
          g.hi = math.max(g.hi, hi)
        else
          gone[m] = { lo = lo, hi = hi }
        end
      end
    end
    return gone[n]
  end
  local foreign = {}
  local first_live
  local pruned = 0
  for _, t in ipairs(rec.tickets) do
    local us = t.expires * 1000000
    local m = mine[t.number]
    local g = not (m and us >= m.lo - 1 and us <= m.hi + 1) and gone_at(t.number)
    if m and us >= m.lo - 1 and us <= m.hi + 1 then
      if math.abs(us - m.hi) < 1 and not m.t then
        m.t = t
      else
        -- An older copy of a live ticket of ours (or a second copy).
        m.stale = true
        REPAIRS = REPAIRS + 1
        changed = true
      end
    elseif g and us >= g.lo - 1 and us <= g.hi + 1 then
      -- A ticket of ours we released, brought back by a stale write.
      REPAIRS = REPAIRS + 1
      changed = true
    elseif nowf > t.expires then
      pruned = pruned + 1
    else
      foreign[#foreign + 1] = t
      if not first_live then
        first_live = t
      end
    end
    if m and m.t == t and not first_live and not (now > m.hi) then
      first_live = t
    end
  end
  table.sort(order)
  local ours = {}
  for _, n in ipairs(order) do
    local m = mine[n]
    if now > m.hi then
      -- Expired: gone with the rest.
      pruned = pruned + 1
    else
      local t = m.t
      if not t then
        -- Dropped by a stale write (or set back to an older copy, counted
        -- above): put back as we last wrote it.
        if not m.stale then
          REPAIRS = REPAIRS + 1
        end
        changed = true
        t = { number = n, us = m.hi, expires = m.hi / 1000000 }
      end
      t.ours, t.lo, t.hi = true, m.lo, m.hi
      ours[#ours + 1] = t
    end
  end
  if pruned > 0 then
    changed = true
  end
  local out = {}
  local holder
  for i, t in ipairs(ours) do
    if t.number == st.holder then
      holder = t
      table.remove(ours, i)
      break
    end
  end
  if not holder then
    st.holder = nil
  end
  if holder then
    out[1] = holder
  elseif first_live and not first_live.ours then
    out[1] = first_live
    table.remove(foreign, 1)
  end
  local fi, oi = 1, 1
  while foreign[fi] or ours[oi] do
    local f, o = foreign[fi], ours[oi]
    if f and (not o or f.number <= o.number) then
      out[#out + 1] = f
      fi = fi + 1
    else
      out[#out + 1] = o
      oi = oi + 1
    end
  end
  rec.tickets = out
  if st.epoch then
    rec.epoch = st.epoch
  end
  rec.existed = existed
  rec.pruned = pruned
  if st.last_issued and (not rec.last_issued or st.last_issued > rec.last_issued) then
    rec.last_issued = st.last_issued
  end
  return rec, st, changed
end

-- A ticket's entry in our state's lists: `n:lo:hi`.
local function entry(t)
  return int(t.number) .. ':' .. int(t.lo) .. ':' .. int(t.hi)
end

-- The index of our ticket `number` in a record from full(), or nil.
local function ours_at(rec, st, number)
  if rec.fast then
    local lo, hi = live_range(st, number)
    if not lo then
      return nil
    end
    for i, t in ipairs(rec.tickets) do
      if t.number == number and math.abs(t.expires * 1000000 - hi) < 1 then
        t.ours, t.lo, t.hi = true, lo, hi
        return i
      end
    end
    return nil
  end
  for i, t in ipairs(rec.tickets) do
    if t.ours and t.number == number then
      return i
    end
  end
  return nil
end

-- Adds our new ticket `t` (its `us` set) at the end of the queue.
local function append_ours(rec, st, t)
  t.ours, t.lo, t.hi = true, t.us, t.us
  rec.tickets[#rec.tickets + 1] = t
  if rec.fast then
    st.live = live_of(st) .. entry(t) .. ','
  end
end

-- Takes a ticket of the record that is not known as ours for ours: the
-- caller holds its number from us (a record written before this state
-- existed, or replaced with save_lock). Not when it is one we released.
local function adopt(rec, st, number)
  if is_gone(st, number) then
    return nil
  end
  for i, t in ipairs(rec.tickets) do
    if not t.ours and t.number == number then
      local us = math.floor(t.expires * 1000000 + 0.5)
      t.ours, t.lo, t.hi = true, us, us
      if rec.fast then
        st.live = live_of(st) .. entry(t) .. ','
      end
      return i
    end
  end
  return nil
end

-- Whether `t` (in a record from full()) is live now.
local function live(t, now)
  return not (now / 1000000 > t.expires)
end

-- Extends our ticket `t` to a lifetime from now.
local function extend_ours(rec, st, t, now, lifetime)
  local old = entry(t)
  extend(t, now, lifetime)
  t.hi = t.us
  if rec.fast then
    st.live = replace_entry(live_of(st), old, entry(t))
  end
end

-- How many released tickets are kept: a stale write brings back the ones
-- released while its writer was between its GET and its SET (a few ms), so
-- the latest few are enough, and the list stays short to read.
local GONE_KEPT = 8

-- Releases our ticket at `i`: out of the queue, its copies dropped from
-- now on until it would have expired (while it is among the latest
-- GONE_KEPT released).
local function drop_ours(rec, st, i, now)
  local t = table.remove(rec.tickets, i)
  if st.holder == t.number then
    st.holder = nil
  end
  if rec.fast then
    local live = live_of(st)
    local a, b = string.find(live, ',' .. entry(t) .. ',', 1, true)
    if a then
      st.live = string.sub(live, 1, a) .. string.sub(live, b + 1)
    end
  end
  if t.hi >= now then
    local gone = st.gone .. entry(t) .. ','
    local _, count = string.gsub(gone, ',', '')
    if count > GONE_KEPT + 1 then
      gone = string.sub(gone, string.find(gone, ',', 2, true))
    end
    st.gone = gone
  end
end

-- Writes the record (save() of common.lua: SET or DEL, and the new head's
-- wake-up unless it is `quiet`), then our state with a copy of it, kept as
-- long as the record or the latest of our released tickets.
local function commit(rec, st, now, quiet)
  local body = save(rec, now, quiet)
  if not rec.tickets[1] then
    if st.gone == ',' then
      redis.call('DEL', OURS)
      return
    end
    -- The record is gone: the next ticket starts a new incarnation; only
    -- the released tickets are kept, until the latest would have expired.
    redis.call('SET', OURS, '- - - - - - , ' .. st.gone .. '\n', 'PX',
      ttl_ms(last_hi(st.gone) / 1000000, now))
    return
  end
  local live
  local last = 0
  local first = rec.tickets[1].expires
  for _, t in ipairs(rec.tickets) do
    if t.expires > last then
      last = t.expires
    end
    if t.expires < first then
      first = t.expires
    end
  end
  -- The bounds for splice.lua: min rounded down, max up.
  st.n = #rec.tickets
  st.min = math.floor(first * 1000000) - 1
  st.max = math.ceil(last * 1000000) + 1
  if rec.fast then
    live = live_of(st)
  else
    local parts = {}
    for _, t in ipairs(rec.tickets) do
      if t.ours then
        parts[#parts + 1] = entry(t)
      end
    end
    live = ',' .. table.concat(parts, ',') .. (#parts > 0 and ',' or '')
  end
  local hi = last_hi(st.gone)
  if hi and hi / 1000000 > last then
    last = hi / 1000000
  end
  st.epoch = rec.epoch
  st.last_issued = rec.last_issued
  st.live = live
  redis.call('SET', OURS, state_head(st) .. body, 'PX', ttl_ms(last, now))
end

-- Our state and the record's text, when the record is byte for byte the
-- copy in our state (nobody else wrote since we did) and a ticket of
-- `epoch` (-1: any) may be of it; else nil. (Both are read once per
-- call: a full write after this reads neither again.)
local function unchanged(epoch)
  local st = state()
  if not st or (epoch >= 0 and st.epoch and st.epoch ~= epoch) then
    return nil
  end
  local raw = raw_record()
  if type(raw) ~= 'string' or not is_copy(st, raw) then
    return nil
  end
  return st, raw
end

-- Where the element `el` starts in the record's list, or nil. Found from
-- its second byte: its first, `"`, starts every escaped quote (six times
-- an element), and a plain find stops at each; `{` comes once an element.
local function find_element(raw, el)
  local at = string.find(raw, string.sub(el, 2), #PREFIX + 1, true)
  if not at or string.byte(raw, at - 1) ~= 34 then
    return nil
  end
  return at - 1
end

-- The answer of a look by a waiting ticket of ours that finds nothing to
-- do: {1, ahead, holder remaining us}, read from the record without
-- writing, or nil when the look must go through full() (the record changed
-- since we wrote it, the ticket may be granted or needs its keep-alive:
-- less than 2/3 of `lifetime` left). Reads the record only up to the
-- ticket, with C string functions: no table per ticket.
local TICKET_AT = '^"{\\"number\\": (%d+), \\"expires\\": ([%d.e+-]+)}"([,%]] ?)'
local function look(now, number, epoch, lifetime)
  local st, raw = unchanged(epoch)
  if not st or st.holder == number then
    return nil
  end
  local lo, hi = live_range(st, number)
  if not lo or hi - now < lifetime * 2 / 3 then
    return nil
  end
  local at = find_element(raw, ticket_element({ number = number, us = hi }))
  if not at then
    return nil
  end
  -- The first live ticket: the holder (or the head of the queue).
  local nowf = now / 1000000
  local pos = #PREFIX + 1
  local skipped = 0
  local remaining
  local s0, e0
  while true do
    local s, e, _, exp, sep = string.find(raw, TICKET_AT, pos)
    if not s or s == at then
      return nil
    end
    if not s0 then
      s0, e0 = s, e
    end
    local expires = tonumber(exp)
    if not (nowf > expires) then
      remaining = math.ceil(expires * 1000000 - now)
      break
    end
    skipped = skipped + 1
    if sep == ']' then
      return nil
    end
    pos = e + 1
  end
  if remaining < 0 then
    remaining = 0
  end
  -- Tickets before ours: every element starts with `"{`. Counted near
  -- the head (where it decides who looks often); deeper, estimated from
  -- the offset, elements being of nearly one length (an exact count would
  -- cost a C call per ticket). Expired ones after the head still count
  -- until the next write prunes them.
  local before = 0
  local width = e0 - s0 + 1
  if at - s0 > 16 * width then
    before = math.floor((at - s0) / width + 0.5)
  else
    local p = string.find(raw, '"{', s0, true)
    while p and p < at do
      before = before + 1
      p = string.find(raw, '"{', p + 2, true)
    end
  end
  return { 1, before - skipped, remaining }
end

-- Runs `main` (as run() does) and adds the number of repairs made to its
-- answer: last in a list, or {answer, repairs}.
local function run_ours(main)
  return run(function()
    local answer = main()
    if type(answer) == 'table' then
      answer[#answer + 1] = REPAIRS
      return answer
    end
    return { answer, REPAIRS }
  end)
end
