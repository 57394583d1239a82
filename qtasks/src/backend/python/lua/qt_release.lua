-- Puts a task this holder took back at the front of the queue, `new`.
-- KEYS: 1 record, 2 task_queue, 3 task_process, 4 this holder's holds set
-- ARGV: 1 entry
-- Reply: 1 if put back, 0 if this holder did not hold it.
local t = redis.call('TIME')
local now_s = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
if redis.call('SREM', KEYS[4], ARGV[1]) == 0 then
  return 0
end
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('HGET', KEYS[1], 'status') == 'process' then
  redis.call('HSET', KEYS[1], 'status', 'new', 'updated_at', now_s)
end
redis.call('LPUSH', KEYS[2], ARGV[1])
return 1
