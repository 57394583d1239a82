-- CANCEL: a `new` task becomes the `cancel` record built by the caller
-- (if its data is still the one the caller read), leaves the queue or the
-- delayed set, is counted and published; for a `process` one the request
-- is stored (field `cancel`, the first reason wins) and published.
--
-- A cancelled task's unique key is freed as by FINISH.
--
-- KEYS: 1 record, 2 stats.
-- ARGV: 1 cancel record, 2 data read, 3 reason, 4 retention (ms, 0 = keep),
--       5 done channel, 6 cancel channel, 7 uuid, 8 stats field, 9 app
--       prefix `P`.
-- Returns `cancelled`, `requested`, `changed` (read again), `missing`,
-- or the status the task had.

local rec = redis.call('HMGET', KEYS[1], 'status', 'data', 'entry', 'queue', 'ukey', 'uwin', 'at')
if not rec[1] or not rec[2] then return 'missing' end
if rec[1] == 'new' then
  if rec[2] ~= ARGV[2] then return 'changed' end
  redis.call('HSET', KEYS[1], 'status', 'cancel', 'data', ARGV[1])
  reindex(ARGV[9], ARGV[7], 'new', 'cancel', rec[7])
  trim_index(ARGV[9], 'cancel')
  if rec[3] then
    local queue, delayed = queue_keys(ARGV[9], rec[4])
    redis.call('ZREM', queue, rec[3])
    redis.call('ZREM', delayed, rec[3])
    redis.call('HDEL', KEYS[1], 'entry')
  end
  if rec[5] and redis.call('GET', rec[5]) == ARGV[7] then
    local window = tonumber(rec[6]) or 0
    if window > 0 then redis.call('PEXPIRE', rec[5], window) else redis.call('DEL', rec[5]) end
  end
  if tonumber(ARGV[4]) > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  else
    redis.call('PERSIST', KEYS[1])
  end
  redis.call('HINCRBY', KEYS[2], ARGV[8], 1)
  count_minute(KEYS[2], ARGV[8])
  redis.call('PUBLISH', ARGV[5], ARGV[7])
  return 'cancelled'
end
if rec[1] == 'process' then
  redis.call('HSETNX', KEYS[1], 'cancel', ARGV[3])
  redis.call('PUBLISH', ARGV[6], ARGV[7] .. ' ' .. redis.call('HGET', KEYS[1], 'cancel'))
  return 'requested'
end
return rec[1]
