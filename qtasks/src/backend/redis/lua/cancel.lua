-- CANCEL: a `new` task becomes the `cancel` record built by the caller
-- (if its data is still the one the caller read), leaves the queue or the
-- delayed set, is counted and published; for a `process` one the request
-- is stored (field `cancel`, the first reason wins) and published.
--
-- KEYS: 1 record, 2 queue, 3 delayed, 4 stats.
-- ARGV: 1 cancel record, 2 data read, 3 reason, 4 retention (ms, 0 = keep),
--       5 done channel, 6 cancel channel, 7 uuid, 8 stats field.
-- Returns `cancelled`, `requested`, `changed` (read again), `missing`,
-- or the status the task had.

local rec = redis.call('HMGET', KEYS[1], 'status', 'data', 'entry')
if not rec[1] or not rec[2] then return 'missing' end
if rec[1] == 'new' then
  if rec[2] ~= ARGV[2] then return 'changed' end
  redis.call('HSET', KEYS[1], 'status', 'cancel', 'data', ARGV[1])
  if rec[3] then
    redis.call('ZREM', KEYS[2], rec[3])
    redis.call('ZREM', KEYS[3], rec[3])
    redis.call('HDEL', KEYS[1], 'entry')
  end
  if tonumber(ARGV[4]) > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  else
    redis.call('PERSIST', KEYS[1])
  end
  redis.call('HINCRBY', KEYS[4], ARGV[8], 1)
  redis.call('PUBLISH', ARGV[5], ARGV[7])
  return 'cancelled'
end
if rec[1] == 'process' then
  redis.call('HSETNX', KEYS[1], 'cancel', ARGV[3])
  redis.call('PUBLISH', ARGV[6], ARGV[7] .. ' ' .. redis.call('HGET', KEYS[1], 'cancel'))
  return 'requested'
end
return rec[1]
