-- FINISH: writes the final (or `retry`) record with its expiry, releases
-- the task (lease and any requeued copy), counts it in the stats unless it
-- had ended already, and publishes its uuid. A `retry` never replaces a
-- record that is already done (a status only moves forward).
--
-- KEYS: 1 record, 2 queue, 3 inflight, 4 held, 5 stats.
-- ARGV: 1 data, 2 status, 3 retention (ms, 0 = keep), 4 done channel,
--       5 uuid, 6 stats field (empty: not counted).
-- Returns 1.

local cur = redis.call('HGET', KEYS[1], 'status')
local was_done = cur == 'success' or cur == 'error' or cur == 'cancel' or cur == 'retry'
if not (was_done and ARGV[2] == 'retry') then
  -- `entry` stays: only a `new` record's is ever read (by CANCEL).
  redis.call('HSET', KEYS[1], 'status', ARGV[2], 'data', ARGV[1])
  if tonumber(ARGV[3]) > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  else
    redis.call('PERSIST', KEYS[1])
  end
end
local entry = redis.call('HGET', KEYS[4], ARGV[5])
if entry then
  redis.call('ZREM', KEYS[2], entry)
  redis.call('HDEL', KEYS[4], ARGV[5])
end
redis.call('ZREM', KEYS[3], ARGV[5])
if not was_done and ARGV[6] ~= '' then redis.call('HINCRBY', KEYS[5], ARGV[6], 1) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
