-- Writes the end of a run to a Python QTasks record, releases the task
-- from `task_process` and this holder, counts it, and publishes its uuid.
-- KEYS: 1 record, 2 task_process, 3 this holder's holds set, 4 stats
-- ARGV: 1 queue entry, 2 status, 3 done channel, 4 uuid, 5 stats field,
--       then field, value pairs to write (outcome, extra fields)
-- Reply: 1 if written, 0 if the run was not this holder's any more or the
--        record had already ended (nothing written).
local t = redis.call('TIME')
local now_s = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
if redis.call('SREM', KEYS[3], ARGV[1]) == 0 then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'success' or status == 'error' or status == 'cancel' then
  return 0
end
local fields = { 'status', ARGV[2], 'updated_at', now_s }
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
