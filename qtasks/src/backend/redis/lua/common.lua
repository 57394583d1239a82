-- Helpers shared by the scripts: `scripts.rs` puts this file in front of
-- each of them (a script cannot call another).

-- Whether a status is final, or `retry`: the task's run has ended.
local function done(status)
  return status == 'success' or status == 'error' or status == 'cancel' or status == 'retry'
end

-- A record's fields, or nil when the key holds another type than a hash
-- (a `pcall`: a script that fails keeps the writes it made before).
local function fields(key, ...)
  local rec = redis.pcall('HMGET', key, ...)
  if rec.err then return nil end
  return rec
end

-- The server's time, in ms and in µs.
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Notes that a holder was seen at `now` (in the string at `alive`). After a
-- gap in which no holder was seen (the server was down or unreachable, or
-- no worker ran) for more than half a `liveness`, every holder's deadline
-- in `holders` is stale: all get a fresh liveness instead of being taken
-- for dead, so live workers that come back in time keep their tasks.
local function seen(holders, alive, now, liveness)
  local last = tonumber(redis.call('GET', alive))
  if last and now - last > liveness / 2 then
    for _, h in ipairs(redis.call('ZRANGE', holders, 0, -1)) do
      redis.call('ZADD', holders, now + liveness, h)
    end
  end
  redis.call('SET', alive, now)
end

