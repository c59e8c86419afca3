-- Whether the ticket is the live holder; writes nothing.
-- ARGV[2]: ticket number, ARGV[3]: epoch or -1. Returns 1 or 0.
general()
local number = tonumber(ARGV[2])
local epoch = tonumber(ARGV[3])
local now = clock_us()
local st = load_raw(false)
if not st or not same_epoch(st, epoch) or st.h ~= number or st.p then
  return 0
end
if st.x then
  return st.x >= now and 1 or 0
end
local score = redis.call('ZSCORE', X, int(number))
if score and tonumber(score) >= now then
  return 1
end
return 0
