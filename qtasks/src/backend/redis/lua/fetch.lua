-- FETCH: moves due delayed tasks into the queue, requeues expired leases
-- (or, for tasks whose cancel was requested, keeps them to be ended
-- `cancel`), then takes up to ARGV[1] tasks and marks their records
-- `process`. Malformed entries and entries without a record go to the
-- dead letters.
--
-- KEYS: 1 queue, 2 inflight, 3 held, 4 wake, 5 dead, 6 delayed.
-- ARGV: 1 max, 2 lease (ms), 3 record key prefix (`P task:`),
--       4 dead letters kept, 5 expired leases requeued and delayed tasks
--       promoted at most.
-- Returns {ms until the next lease deadline or delayed task, or -1;
--          dead letters filed; {uuid, data, ...} taken;
--          {uuid, data, reason, ...} to end `cancel`}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local batch = tonumber(ARGV[5])
local deadline = now + tonumber(ARGV[2])
local function done(status)
  return status == 'success' or status == 'error' or status == 'cancel' or status == 'retry'
end
local cancels = {}
local function to_cancel(id, data, reason)
  redis.call('ZADD', KEYS[2], deadline, id)
  cancels[#cancels + 1] = id
  cancels[#cancels + 1] = data
  cancels[#cancels + 1] = reason
end
local due = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now, 'LIMIT', 0, batch)
for _, entry in ipairs(due) do
  redis.call('ZREM', KEYS[6], entry)
  redis.call('ZADD', KEYS[1], 0, entry)
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, batch)
for _, id in ipairs(expired) do
  local rec = redis.call('HMGET', ARGV[3] .. id, 'status', 'data', 'cancel')
  if rec[2] and rec[3] and not done(rec[1]) then
    -- Its worker is gone and a cancel was requested: it ends here, unrun.
    to_cancel(id, rec[2], rec[3])
  else
    redis.call('ZREM', KEYS[2], id)
    local entry = redis.call('HGET', KEYS[3], id)
    if entry then redis.call('ZADD', KEYS[1], 0, entry) end
  end
end
local want = tonumber(ARGV[1])
local pattern = '^' .. string.rep('%x', 32)
  .. '(%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x)$'
local taken, dead, out = 0, 0, {}
local function bury(entry, reason)
  redis.call('RPUSH', KEYS[5], cjson.encode({entry = entry, reason = reason, at = now / 1000}))
  dead = dead + 1
end
while taken < want do
  local popped = redis.call('ZPOPMIN', KEYS[1], want - taken)
  if #popped == 0 then break end
  for i = 1, #popped, 2 do
    local entry = popped[i]
    local id = string.match(entry, pattern)
    if not id then
      bury(entry, 'malformed queue entry')
    else
      local rec = redis.call('HMGET', ARGV[3] .. id, 'status', 'data', 'cancel')
      if not rec[2] then
        bury(entry, 'no record for this task')
      elseif done(rec[1]) then
        redis.call('HDEL', KEYS[3], id)
      elseif rec[3] then
        -- Requeued after its worker was gone, and a cancel was requested.
        redis.call('HSET', KEYS[3], id, entry)
        to_cancel(id, rec[2], rec[3])
      else
        redis.call('ZADD', KEYS[2], deadline, id)
        redis.call('HSET', KEYS[3], id, entry)
        -- Taken: the record reads `process` from now on (see `decode_record`).
        redis.call('HSET', ARGV[3] .. id, 'status', 'process', 'started', tonumber(t[1]) * 1000000 + tonumber(t[2]))
        out[#out + 1] = id
        out[#out + 1] = rec[2]
        taken = taken + 1
      end
    end
  end
end
if dead > 0 then redis.call('LTRIM', KEYS[5], -tonumber(ARGV[4]), -1) end
if redis.call('ZCARD', KEYS[1]) > 0 then
  redis.call('RPUSH', KEYS[4], '1')
  redis.call('LTRIM', KEYS[4], 0, 0)
end
local next_ms = -1
for _, key in ipairs({KEYS[2], KEYS[6]}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first > 0 then
    local ms = math.max(0, tonumber(first[2]) - now)
    if next_ms < 0 or ms < next_ms then next_ms = ms end
  end
end
return {next_ms, dead, out, cancels}
