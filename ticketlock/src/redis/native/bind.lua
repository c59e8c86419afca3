-- The start of every call of the native layout: the call's key and the
-- prefix of its other names into the locals that common.lua's helpers read
-- (see the top of common.lua). The names made from the prefix are cleared
-- here and made by `general` when the operation needs them.

K = KEYS[1]
P = ARGV[1]
Q, X, REQUEST = nil, nil, nil
