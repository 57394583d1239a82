-- HEARTBEAT: marks a holder alive until the server's time plus its
-- liveness; a fetch takes back the tasks of a holder whose liveness passed.
--
-- KEYS: 1 holders.
-- ARGV: 1 holder id, 2 liveness (ms).
-- Returns 1.

local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2]), ARGV[1])
return 1
