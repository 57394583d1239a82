-- Renews the delivery time of a message still unacked (a long task), so
-- that no worker restores it while it runs.
-- KEYS: 1 unacked_index
-- ARGV: 1 delivery tag
-- Reply: 1 if renewed, 0 if it is not unacked any more.
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], t[1] .. '.' .. string.format('%06d', tonumber(t[2])), ARGV[1])
return 1
