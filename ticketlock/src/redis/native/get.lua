-- The conversation for inspection, read only: {n, e, holder or -1,
-- provisional 0/1, number, expiry µs, number, expiry µs, ...} in queue
-- order, or {} when it has none. O(depth): for tools, not the lock path.
general()
local st = load_raw(false)
if not st then
  return {}
end
local out = { int(st.n), int(st.e), int(st.h or -1), st.p and '1' or '0' }
if st.x then
  -- Uncontended: the holder alone, in K.
  out[5] = int(st.h)
  out[6] = int(st.x)
  return out
end
for _, m in ipairs(redis.call('ZRANGE', Q, 0, -1)) do
  out[#out + 1] = m
  out[#out + 1] = redis.call('ZSCORE', X, m) or '0'
end
return out
