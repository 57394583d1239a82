-- HEARTBEAT: marks a holder alive until the server's time plus its
-- liveness; a fetch takes back the tasks of a holder whose liveness passed.
-- Only a holder still registered: one that was taken for dead, or
-- whose app was flushed, registers again with its next fetch.
--
-- After a gap in which no holder was seen (the server was down or
-- unreachable, or no worker ran) for more than half a liveness, every
-- holder's deadline is stale: all get a fresh liveness instead of being
-- taken for dead, so live workers that come back in time keep their tasks.
--
-- KEYS: 1 holders, 2 alive (when a holder was last seen, ms).
-- ARGV: 1 holder id, 2 liveness (ms).
-- Returns 1.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function seen(now, liveness)
  local last = tonumber(redis.call('GET', KEYS[2]))
  if last and now - last > liveness / 2 then
    local all = redis.call('ZRANGE', KEYS[1], 0, -1)
    for _, h in ipairs(all) do redis.call('ZADD', KEYS[1], now + liveness, h) end
  end
  redis.call('SET', KEYS[2], now)
end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  seen(now, tonumber(ARGV[2]))
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
end
return 1
