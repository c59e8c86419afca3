-- Shared head of every script (prepended at build time).
--
-- KEYS[1]: the record's key, also the channel its changes are announced on.
-- ARGV[1]: the conversation id, already JSON-encoded the way Python's
--          json.dumps writes it (the client computes it).
--
-- The record is Rasa's JSON, byte for byte as Python writes it:
--   {"conversation_id": "c1", "tickets": ["{\"number\": 0, \"expires\": 1795892618.7471275}"]}
-- then our optional fields `, "last_issued": N, "epoch": E` (last_issued
-- only when it is above every number in the queue). cjson.encode
-- cannot write that (no spaces, escapes '/', 14-digit floats), so records
-- are written by hand: tickets left untouched keep the string they were
-- stored as; new or changed tickets are rendered here.
--
-- Cost: every call of a script runs this whole head, and making a closure
-- costs about as much as a short function call; so only what the usual
-- path needs is made here, and the rest (other layouts, floats that are
-- not whole microseconds, ids with characters to escape) in slow(), on
-- first use. Records in our layout are read with anchored patterns, not
-- cjson, keeping each ticket's text.

-- Scripts read the server clock (TIME) before writing; Redis < 5 needs
-- effects replication for that (later versions always do it).
if redis.replicate_commands then
  pcall(redis.replicate_commands)
end

local KEY = KEYS[1]
local ID_JSON = ARGV[1]

-- The rarely needed helpers, made on first use (see above).
local slow_helpers
local function slow()
  if slow_helpers then
    return slow_helpers
  end

  local function corrupt(message)
    error({ ticketlock_corrupt = message })
  end

  -- A float as Python's repr writes it: the shortest digits that read back
  -- to the same double, fixed notation for exponents in [-4, 16), else
  -- d.ddde+XX; ".0" on integral values.
  local function py_float(x)
    if x ~= x then return 'NaN' end
    if x == math.huge then return 'Infinity' end
    if x == -math.huge then return '-Infinity' end
    if x == 0 then
      if 1 / x < 0 then return '-0.0' end
      return '0.0'
    end
    -- 15 significant digits hold every shorter representation of a normal
    -- double (trailing zeros are trimmed below); subnormals have fewer
    -- digits of precision, so they search from one digit up.
    local s
    local from = 14
    if math.abs(x) < 2.2250738585072014e-308 then
      from = 0
    end
    for p = from, 16 do
      s = string.format('%.' .. p .. 'e', x)
      if tonumber(s) == x then break end
    end
    local sign, d1, rest, e = string.match(s, '^(-?)(%d)%.?(%d*)e([-+]%d+)$')
    local digits = string.gsub(d1 .. rest, '0+$', '')
    local exp = tonumber(e)
    if exp < -4 or exp >= 16 then
      local m = string.sub(digits, 1, 1)
      if #digits > 1 then
        m = m .. '.' .. string.sub(digits, 2)
      end
      local es = exp < 0 and '-' or '+'
      return sign .. m .. 'e' .. es .. string.format('%02d', math.abs(exp))
    end
    if exp < 0 then
      return sign .. '0.' .. string.rep('0', -exp - 1) .. digits
    end
    if #digits <= exp + 1 then
      return sign .. digits .. string.rep('0', exp + 1 - #digits) .. '.0'
    end
    return sign .. string.sub(digits, 1, exp + 1) .. '.' .. string.sub(digits, exp + 2)
  end

  local SHORT_ESCAPES = {
    ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r',
    ['\t'] = '\\t', ['\b'] = '\\b', ['\f'] = '\\f',
  }

  -- A string as Python's json.dumps writes it (ensure_ascii): everything
  -- outside printable ASCII is escaped, as \uXXXX (UTF-16 surrogate pairs
  -- above the BMP).
  local function py_str(s)
    if not string.find(s, '[%z\1-\31"\\\127-\255]') then
      return '"' .. s .. '"'
    end
    -- Printable ASCII with quotes or backslashes (a ticket's JSON): one
    -- substitution in C rather than a loop here.
    if not string.find(s, '[%z\1-\31\127-\255]') then
      return '"' .. (string.gsub(s, '["\\]', '\\%0')) .. '"'
    end
    local out = {}
    local i, n = 1, #s
    while i <= n do
      local c = string.byte(s, i)
      local cp, len
      if c < 0x80 then
        cp, len = c, 1
      elseif c >= 0xC2 and c <= 0xDF then
        cp, len = c - 0xC0, 2
      elseif c >= 0xE0 and c <= 0xEF then
        cp, len = c - 0xE0, 3
      elseif c >= 0xF0 and c <= 0xF4 then
        cp, len = c - 0xF0, 4
      else
        corrupt('a ticket is not valid UTF-8')
      end
      for j = i + 1, i + len - 1 do
        local b = string.byte(s, j)
        if not b or b < 0x80 or b > 0xBF then
          corrupt('a ticket is not valid UTF-8')
        end
        cp = cp * 64 + (b - 0x80)
      end
      if len == 1 then
        local ch = string.char(c)
        local short = SHORT_ESCAPES[ch]
        if short then
          out[#out + 1] = short
        elseif c < 0x20 or c == 0x7F then
          out[#out + 1] = string.format('\\u%04x', c)
        else
          out[#out + 1] = ch
        end
      elseif cp >= 0x10000 then
        local v = cp - 0x10000
        out[#out + 1] = string.format('\\u%04x\\u%04x',
          0xD800 + math.floor(v / 1024), 0xDC00 + v % 1024)
      else
        out[#out + 1] = string.format('\\u%04x', cp)
      end
      i = i + len
    end
    return '"' .. table.concat(out) .. '"'
  end

  local function is_count(v)
    return type(v) == 'number' and v >= 0 and v < 9007199254740992 and math.floor(v) == v
  end

  local function is_finite(v)
    return type(v) == 'number' and v == v and v ~= math.huge and v ~= -math.huge
  end

  local function optional_count(doc, name)
    local v = doc[name]
    if v == nil or v == cjson.null then
      return nil
    end
    if not is_count(v) then
      corrupt('`' .. name .. '` is not a non-negative integer below 2^53')
    end
    return v
  end

  local function parse_ticket(i, element)
    local t, element_json
    if type(element) == 'string' then
      local ok, decoded = pcall(cjson.decode, element)
      if not ok then
        corrupt('ticket ' .. (i - 1) .. ': not JSON')
      end
      t = decoded
      element_json = element
    elseif type(element) == 'table' then
      -- A plain object: tolerated (as the Rust reader does), rewritten as a string.
      t = element
    else
      corrupt('ticket ' .. (i - 1) .. ': neither a string nor an object')
    end
    if type(t) ~= 'table' then
      corrupt('ticket ' .. (i - 1) .. ': not a JSON object')
    end
    if not is_count(t.number) then
      corrupt('ticket ' .. (i - 1) .. ': `number` is missing or not a non-negative integer below 2^53')
    end
    if not is_finite(t.expires) then
      corrupt('ticket ' .. (i - 1) .. ': `expires` is missing or not a finite number')
    end
    local ticket = { number = t.number, expires = t.expires }
    if element_json then
      ticket.element = py_str(element_json)
    end
    return ticket
  end

  -- Any record cjson reads (load() tries our layout first).
  local function load_generic(raw)
    local ok, doc = pcall(cjson.decode, raw)
    if not ok then
      corrupt('not JSON')
    end
    -- cjson decodes arrays to tables too: one with elements is no object.
    if type(doc) ~= 'table' or doc[1] ~= nil then
      corrupt('not a JSON object')
    end
    local cid = doc.conversation_id
    if cid == nil then
      corrupt('no `conversation_id`')
    end
    if type(cid) ~= 'string' then
      corrupt('`conversation_id` is not a string')
    end
    -- Another conversation's record under this key: not ours to rewrite.
    if py_str(cid) ~= ID_JSON then
      corrupt('`conversation_id` is not the conversation of its key')
    end
    local list = doc.tickets
    if list == nil or list == cjson.null then
      list = {}
    end
    if type(list) ~= 'table' then
      corrupt('`tickets` is not a list')
    end
    local count = 0
    for _ in pairs(list) do
      count = count + 1
    end
    if count ~= #list then
      corrupt('`tickets` is not a list')
    end
    local rec = {
      tickets = {},
      last_issued = optional_count(doc, 'last_issued'),
      epoch = optional_count(doc, 'epoch'),
    }
    for i = 1, #list do
      local t = parse_ticket(i, list[i])
      rec.tickets[i] = t
      if not rec.last_issued or t.number > rec.last_issued then
        rec.last_issued = t.number
      end
    end
    if rec.tickets[1] then
      rec.head = rec.tickets[1].number
    end
    return rec
  end

  slow_helpers = {
    corrupt = corrupt,
    py_float = py_float,
    py_str = py_str,
    load_generic = load_generic,
  }
  return slow_helpers
end

-- Runs `main` and turns a corrupt record into an error reply whose code
-- (CORRUPT) the client maps to its corrupt-record error.
local function run(main)
  local ok, result = pcall(main)
  if ok then
    return result
  end
  if type(result) == 'table' and result.ticketlock_corrupt then
    return redis.error_reply('CORRUPT ' .. result.ticketlock_corrupt)
  end
  if type(result) == 'table' and result.ticketlock_layout then
    return redis.error_reply('LAYOUT native')
  end
  error(result)
end

-- The server's time in microseconds (exact in a double until year 2255).
-- Arithmetic on TIME's strings converts them (no tonumber calls: every
-- call into a C function costs about 2,000 instructions here).
local function clock_us()
  local t = redis.call('TIME')
  return t[1] * 1000000 + t[2]
end

-- A whole number (below 2^63) in decimal: %d formats it as an integer,
-- much faster than %.0f.
local function int(n)
  return string.format('%d', n)
end

-- The TTL in milliseconds of a record whose latest ticket expires at
-- `last` (seconds): until then, plus a grace of one second (so a late
-- reader still finds it), at most about 30 years (for absurd expiries).
-- A number: redis.call writes it with %.14g, exact below 1e14.
local function ttl_ms(last, now_us)
  local ms = (last * 1000000 - now_us) / 1000
  local ttl = ms - ms % 1
  if ttl < ms then
    ttl = ttl + 1
  end
  if ttl < 0 then
    ttl = 0
  elseif ttl > 1e12 then
    ttl = 1e12
  end
  return ttl + 1000
end

-- A ticket as an element of the record's `tickets` list: Python's encoding
-- of the string '{"number": N, "expires": F}'. A ticket extended here
-- knows its expiry in whole microseconds `us`; Python's repr of us / 1e6
-- is then the digits of `us` with the point put in, trailing zeros
-- dropped: for 1e-4 <= us / 1e6 < 2^33 (until the year 2242) the double
-- nearest us / 1e6 is within half an ulp (< 1e-6 / 2) of that decimal
-- only, so it is the shortest that reads back, which repr prints.
local function ticket_element(t)
  local us = t.us
  if us and us >= 100 and us < 8589934592000000 and us % 1 == 0 then
    local frac = us % 1000000
    local secs = (us - frac) / 1000000
    if frac == 0 then
      return string.format('"{\\"number\\": %d, \\"expires\\": %d.0}"', t.number, secs)
    end
    local width = 6
    while frac % 10 == 0 do
      frac = frac / 10
      width = width - 1
    end
    return string.format('"{\\"number\\": %d, \\"expires\\": %d.%0' .. width .. 'd}"',
      t.number, secs, frac)
  end
  return '"{\\"number\\": ' .. int(t.number) .. ', \\"expires\\": '
    .. slow().py_float(t.expires) .. '}"'
end

local PREFIX = '{"conversation_id": ' .. ID_JSON .. ', "tickets": ['

-- A count as written in a record, or nil: digits, below 2^53 (leading
-- zeros are read as cjson reads them).
local function count_at(text)
  if text == '0' then
    return 0
  end
  local v = tonumber(text)
  if v and v < 9007199254740992 then
    return v
  end
  return nil
end

-- The record laid out exactly as this module and Rasa write it, read with
-- anchored patterns instead of cjson: each ticket keeps its stored text
-- (`element`), so tickets left untouched are written back without decoding
-- or re-encoding them. nil for any other layout, which slow().load_generic
-- reads instead. Where it returns a record, cjson's reader returns the same
-- one (numbers read by strtod in both; a test checks it). Few C calls: a
-- one-ticket record takes six.
local function load_canonical(raw)
  if string.find(raw, PREFIX, 1, true) ~= 1 then
    return nil
  end
  local rec = { tickets = {} }
  local tickets = rec.tickets
  local pos = #PREFIX + 1
  local highest
  local s, e, num, exp, sep = string.find(raw,
    '^"{\\"number\\": (%d+), \\"expires\\": ([%d.e+-]+)}"([,%]] ?)', pos)
  if not s then
    if not string.find(raw, '^%]', pos) then
      return nil
    end
    pos = pos + 1
  end
  while s do
    local number, expires = count_at(num), tonumber(exp)
    if not number or not expires or expires ~= expires or expires == math.huge
      or expires == -math.huge then
      return nil
    end
    tickets[#tickets + 1] = {
      number = number,
      expires = expires,
      element = string.sub(raw, s, e - #sep),
    }
    if not highest or number > highest then
      highest = number
    end
    pos = e + 1
    if sep == ']' then
      break
    elseif sep ~= ', ' then
      return nil
    end
    s, e, num, exp, sep = string.find(raw,
      '^"{\\"number\\": (%d+), \\"expires\\": ([%d.e+-]+)}"([,%]] ?)', pos)
    if not s then
      return nil
    end
  end
  -- Our fields, most common layout first.
  local last_issued, epoch
  s, e, epoch = string.find(raw, '^, "epoch": (%d+)}$', pos)
  if not s then
    s, e, last_issued, epoch = string.find(raw, '^, "last_issued": (%d+), "epoch": (%d+)}$', pos)
    if not s then
      s, e, last_issued = string.find(raw, '^, "last_issued": (%d+)}$', pos)
      if not s and not string.find(raw, '^}$', pos) then
        return nil
      end
    end
  end
  if last_issued then
    last_issued = count_at(last_issued)
    if not last_issued then
      return nil
    end
  end
  if epoch then
    epoch = count_at(epoch)
    if not epoch then
      return nil
    end
  end
  rec.epoch = epoch
  rec.last_issued = last_issued
  if highest and (not last_issued or highest > last_issued) then
    rec.last_issued = highest
  end
  if tickets[1] then
    rec.head = tickets[1].number
  end
  return rec
end

-- A hash with an epoch at KEY is a conversation of the native layout:
-- refused with the LAYOUT error (the client names lock_store.layout).
-- Called only once KEY is known not to be a string. (A user whose ACL
-- lacks HEXISTS gets the corrupt-record error instead: loud all the same.)
local function refuse_native()
  if redis.pcall('HEXISTS', KEY, 'e') == 1 then
    error({ ticketlock_layout = true })
  end
end

-- The record at KEY, or nil. `last_issued` is the highest number issued,
-- counting the tickets in the queue; `head` is the number of the first
-- ticket as stored (live or not), to tell whether the head changed.
local function load()
  local raw = redis.pcall('GET', KEY)
  if type(raw) == 'table' and raw.err then
    if string.find(raw.err, '^WRONGTYPE') then
      refuse_native()
      slow().corrupt('not a string value (WRONGTYPE)')
    end
    error(raw)
  end
  if not raw then
    return nil
  end
  return load_canonical(raw) or slow().load_generic(raw)
end

-- Drops the expired tickets (Rasa: expired when now > expires). Returns
-- how many went.
local function prune(rec, now_us)
  local now = now_us / 1000000
  local tickets = rec.tickets
  local expired = 0
  for i = 1, #tickets do
    if now > tickets[i].expires then
      expired = expired + 1
    end
  end
  if expired > 0 then
    local kept = {}
    for _, t in ipairs(tickets) do
      if not (now > t.expires) then
        kept[#kept + 1] = t
      end
    end
    rec.tickets = kept
  end
  return expired
end

local function index_of(rec, number)
  for i, t in ipairs(rec.tickets) do
    if t.number == number then
      return i
    end
  end
  return nil
end

-- Whether a ticket of `epoch` (-1: matched by number alone) may be of this
-- record: always when either side has no epoch.
local function same_epoch(rec, epoch)
  return epoch < 0 or rec.epoch == nil or rec.epoch == epoch
end

-- Sets a ticket to expire `lifetime_us` from now; it is rendered anew.
local function extend(t, now_us, lifetime_us)
  t.us = now_us + lifetime_us
  t.expires = t.us / 1000000
  t.element = nil
end

local function remaining_us(t, now_us)
  local r = math.ceil(t.expires * 1000000 - now_us)
  if r < 0 then
    return 0
  end
  return r
end

-- The fencing token of a holder entering with `number` now: the epoch
-- (server time at the record's creation) plus the number; for records
-- without an epoch (written by Rasa), the server time plus the number.
local function token(rec, number, now_us)
  return (rec.epoch or now_us) + number
end

-- Writes the record back with a TTL past its last ticket's expiry, or
-- deletes it when no ticket is left. Then, when the head changed, tells
-- the new head (unless it is `quiet`, the caller that just entered).
-- Returns the text written (nil when deleted).
local function save(rec, now_us, quiet)
  local n = #rec.tickets
  if n == 0 then
    redis.call('DEL', KEY)
    return
  end
  local parts = {}
  local last = rec.tickets[1].expires
  local highest = rec.tickets[1].number
  for i, t in ipairs(rec.tickets) do
    parts[i] = t.element or ticket_element(t)
    if t.expires > last then
      last = t.expires
    end
    if t.number > highest then
      highest = t.number
    end
  end
  local body
  if n == 1 then
    body = PREFIX .. parts[1] .. ']'
  else
    body = PREFIX .. table.concat(parts, ', ') .. ']'
  end
  -- `last_issued` only when the queue does not tell it (its highest ticket
  -- went): readers take the highest of both.
  if rec.last_issued and rec.last_issued > highest then
    body = body .. ', "last_issued": ' .. int(rec.last_issued)
  end
  if rec.epoch then
    body = body .. string.format(', "epoch": %d}', rec.epoch)
  else
    body = body .. '}'
  end
  redis.call('SET', KEY, body, 'PX', ttl_ms(last, now_us))
  local head = rec.tickets[1].number
  if head ~= rec.head and head ~= quiet then
    redis.call(PUBLISH, KEY, int(head))
  end
  return body
end
