-- RELEASE: puts tasks back into the queue at their old place (a fetch that
-- was cancelled while its script ran), and wakes a fetcher.
--
-- KEYS: 1 inflight, 2 held, 3 queue, 4 wake.
-- ARGV: the uuids.
-- Returns how many tasks were put back.

local n = 0
for i = 1, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    local entry = redis.call('HGET', KEYS[2], ARGV[i])
    if entry then
      redis.call('ZADD', KEYS[3], 0, entry)
      redis.call('HDEL', KEYS[2], ARGV[i])
      n = n + 1
    end
  end
end
if n > 0 then
  redis.call('RPUSH', KEYS[4], '1')
  redis.call('LTRIM', KEYS[4], 0, 0)
end
return n
