-- The start of every call of the native layout: the call's keys and
-- channel prefix into the locals that common.lua's helpers read (see the
-- top of common.lua for what each is).

if redis.replicate_commands then
  pcall(redis.replicate_commands)
end

K = KEYS[1]
Q = KEYS[#KEYS - 1]
X = KEYS[#KEYS]
WAKE = ARGV[1]
-- The request's entry of issue and release (K, entry, Q, X); nil for the
-- others (K, Q, X).
REQUEST = (#KEYS == 4) and KEYS[2] or nil
