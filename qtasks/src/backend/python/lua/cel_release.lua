-- Puts a message back in its list, marked redelivered, as kombu restores.
-- KEYS: 1 unacked, 2 unacked_index, 3 the list
-- ARGV: 1 delivery tag, 2 envelope
-- Reply: 1 if put back, 0 if it was not held any more.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[2])
return 1
