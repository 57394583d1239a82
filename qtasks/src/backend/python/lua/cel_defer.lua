-- Moves a message whose ETA is later out of `unacked` into the delayed
-- set, due at its ETA, so no worker holds it in memory meanwhile.
-- KEYS: 1 unacked, 2 unacked_index, 3 delayed
-- ARGV: 1 delivery tag, 2 due (ms since the epoch), 3 member ("key\31envelope")
-- Reply: 1 if moved, 0 if this worker did not hold it any more.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
return 1
