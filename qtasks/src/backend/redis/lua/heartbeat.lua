-- HEARTBEAT: marks a holder alive until the server's time plus its
-- liveness; a fetch takes back the tasks of a holder whose liveness passed.
-- Only a holder still registered: one that was taken for dead, or
-- whose app was flushed, registers again with its next fetch.
--
-- After a gap with no holder seen, liveness is renewed, not judged
-- (`seen`, lua/common.lua).
--
-- KEYS: 1 holders, 2 alive (when a holder was last seen, ms).
-- ARGV: 1 holder id, 2 liveness (ms).
-- Returns 1.

local now = clock()
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  seen(KEYS[1], KEYS[2], now, tonumber(ARGV[2]))
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
end
return 1
