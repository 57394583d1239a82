-- BURY: gives up on tasks this holder took whose record cannot be run
-- (undecodable, another task's, no `data`, a malformed queue entry): files
-- each as a dead letter with its uuid and the reason, and ends its record
-- `error` with the reason and the retention expiry, counted and published
-- on `done` so its waiters wake. Only tasks still held at the run given
-- (else another run decides).
--
-- KEYS: 1 inflight, 2 held, 3 dead, 4 stats.
-- ARGV: 1 dead letters kept, 2 record key prefix, 3 holder set prefix,
--       4 retention (ms, 0 = keep), 5 done channel, then per task: uuid,
--       run, reason, the `error` record to store, the record as it was
--       stored (empty if none), stats field (empty: not counted).
-- Returns how many were buried.

local _, now_us = clock()
local at = now_us / 1000000
local P = string.sub(ARGV[2], 1, -6)
local n = 0
for i = 6, #ARGV, 6 do
  local id, run, reason, record, was, field = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local key = ARGV[2] .. id
  local rec = fields(key, 'status', 'run', 'holder', 'at')
  if rec and not done(rec[1]) and rec[2] == run then
    local entry = redis.call('HGET', KEYS[2], id)
    redis.call('RPUSH', KEYS[3], cjson.encode({
      uuid = id, reason = reason, entry = entry or cjson.null, at = at,
      record = was ~= '' and was or cjson.null,
    }))
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    if rec[3] then redis.call('SREM', ARGV[3] .. rec[3], id) end
    let_go(P, key, id)
    redis.call('HSET', key, 'status', 'error', 'data', record)
    reindex(P, id, rec[1], 'error', rec[4])
    if tonumber(ARGV[4]) > 0 then
      redis.call('PEXPIRE', key, ARGV[4])
    else
      redis.call('PERSIST', key)
    end
    if field ~= '' then redis.call('HINCRBY', KEYS[4], field, 1) end
    if field ~= '' then count_minute(KEYS[4], field) end
    redis.call('PUBLISH', ARGV[5], id)
    n = n + 1
  end
end
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[1]), -1)
return n
