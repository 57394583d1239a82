-- BURY: releases tasks whose record could not be decoded and files them
-- as dead letters.
--
-- KEYS: 1 inflight, 2 held, 3 dead.
-- ARGV: 1 dead letters kept, then (uuid, dead letter) pairs.
-- Returns 1.

for i = 2, #ARGV, 2 do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
  redis.call('RPUSH', KEYS[3], ARGV[i + 1])
end
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[1]), -1)
return 1
