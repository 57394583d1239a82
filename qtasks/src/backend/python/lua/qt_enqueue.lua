-- Stores a `new` Python QTasks record and queues its entry, unless the
-- record exists. With a delay, the entry waits in `delayed` until due.
-- KEYS: 1 record, 2 task_queue, 3 delayed
-- ARGV: 1 entry, 2 delay ms (0: queue now), then field, value pairs
-- Reply: 1 if stored, 0 if the record existed.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
local delay = tonumber(ARGV[2])
if delay > 0 then
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[3], now_ms + delay, ARGV[1])
else
  redis.call('RPUSH', KEYS[2], ARGV[1])
end
return 1
