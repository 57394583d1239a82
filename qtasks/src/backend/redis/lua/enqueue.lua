-- ENQUEUE: stores a new record and queues it (or, with a delay, puts it
-- among the delayed tasks), with a wake-up for blocked fetchers.
--
-- KEYS: 1 record, 2 queue, 3 seq, 4 wake, 5 delayed.
-- ARGV: 1 data (the record as JSON), 2 status, 3 priority hex, 4 uuid,
--       5 delay (ms, 0 = none).
-- Returns the task's place in line (the new value of `seq`), or 0 when a
-- record with this id exists: an enqueue retried with the same id is a
-- no-op.

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local seq = redis.call('INCR', KEYS[3])
local entry = ARGV[3] .. string.format('%016x', seq) .. ARGV[4]
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'data', ARGV[1], 'entry', entry)
local delay = tonumber(ARGV[5])
if delay > 0 then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[5], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + delay, entry)
else
  redis.call('ZADD', KEYS[2], 0, entry)
end
redis.call('RPUSH', KEYS[4], '1')
redis.call('LTRIM', KEYS[4], 0, 0)
return seq
