-- Request ids (prepended to issue and release only, after common.lua).
--
-- REQUEST: the request's entry, `{T}:<record key>:<suffix>` in the record's
-- cluster slot (see keys.rs): KEYS[2] of the rasa layout's scripts, named
-- from ARGV[1] (`{T}:<record key>:`) by the native layout's. It remembers
-- what the first attempt of a request did, so that a retry (ours on a
-- fresh connection, or the cluster client's) answers the same instead of
-- doing it again. The entry lives
-- beside the record, never in it: the record stays Rasa's format byte for
-- byte, and Rasa, which rewrites whole records, cannot drop it. A native
-- layout can keep these helpers as they are.
--
-- Entries are short strings with a TTL of a few socket timeouts (the
-- client passes it): long enough for every retry of the request, short
-- enough that nothing piles up.

-- REQUEST is a local of the script that includes this file.

-- What an earlier attempt of this request remembered, or nil.
local function request_seen()
  local seen = redis.call('GET', REQUEST)
  if seen then
    return seen
  end
  return nil
end

-- Remembers `outcome` (a string) for `ttl_ms` milliseconds.
local function request_remember(outcome, ttl_ms)
  redis.call('SET', REQUEST, outcome, 'PX', ttl_ms)
end

-- An issue's entry: the ticket it made, `<number> <epoch or -1>`.
local function issued_outcome(number, epoch)
  return int(number) .. ' ' .. int(epoch)
end

local function read_issued(seen)
  local number, epoch = string.match(seen, '^(%d+) (%-?%d+)$')
  return tonumber(number), tonumber(epoch)
end
