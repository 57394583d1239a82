-- Renews a holder's liveness and the app's `GlobalConfig:main` hash that
-- Python's `app.ping()` reads (TTL 20 s, as the Python worker writes it).
-- KEYS: 1 holders, 2 GlobalConfig:main
-- ARGV: 1 holder, 2 liveness ms, 3 app name
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], 'name', ARGV[3], 'status', 'running')
redis.call('EXPIRE', KEYS[2], 20)
return 1
