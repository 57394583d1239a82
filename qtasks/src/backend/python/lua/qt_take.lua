-- Takes up to ARGV[5] tasks from a Python QTasks queue, atomically: each
-- popped entry is added to `task_process` and held by this holder, and its
-- record marked `process`, in the same step (the Python worker does LPOP,
-- then ZADD, and loses the task if it dies in between).
-- KEYS: 1 task_queue, 2 task_process, 3 holders (zset holder -> liveness
--       deadline ms), 4 delayed (zset entry -> due ms), 5 dead (list)
-- ARGV: 1 record key prefix ("{name}:"), 2 holds key prefix, 3 holder id,
--       4 liveness ms, 5 max, 6 max dead letters kept
-- Reply: { taken, next_ms } where taken is a flat list of
--        entry, HGETALL fields (as a list), ... and next_ms is the time
--        (ms, server clock) of the next delayed task or holder deadline, or -1.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_s = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local prefix, holds_prefix, holder = ARGV[1], ARGV[2], ARGV[3]
local liveness, max = tonumber(ARGV[4]), tonumber(ARGV[5])

local function dead(entry, uuid, reason)
  redis.call('LPUSH', KEYS[5], cjson.encode({entry = entry, uuid = uuid or cjson.null, reason = reason, at = now_ms / 1000}))
  redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[6]) - 1)
end

-- Tasks of holders that stopped renewing their liveness go back to the
-- front of the queue, `new` again.
local gone = redis.call('ZRANGE', KEYS[3], '-inf', now_ms, 'BYSCORE', 'LIMIT', 0, 16)
for _, h in ipairs(gone) do
  if h ~= holder then
    local holds = holds_prefix .. h
    for _, entry in ipairs(redis.call('SMEMBERS', holds)) do
      if redis.call('ZREM', KEYS[2], entry) == 1 then
        local uuid = string.match(entry, ':([%x%-]+):%-?%d+$')
        if uuid and redis.call('HGET', prefix .. uuid, 'status') == 'process' then
          redis.call('HSET', prefix .. uuid, 'status', 'new', 'updated_at', now_s)
        end
        redis.call('LPUSH', KEYS[1], entry)
      end
    end
    redis.call('DEL', holds)
    redis.call('ZREM', KEYS[3], h)
  end
end
redis.call('ZADD', KEYS[3], now_ms + liveness, holder)

-- Delayed tasks that are due join the queue.
local due = redis.call('ZRANGE', KEYS[4], '-inf', now_ms, 'BYSCORE', 'LIMIT', 0, 100)
for _, entry in ipairs(due) do
  redis.call('ZREM', KEYS[4], entry)
  redis.call('RPUSH', KEYS[1], entry)
end

local taken = {}
local holds = holds_prefix .. holder
local n = 0
local popped = 0
-- Bad entries do not count against `max`, but a bounded number is looked
-- at per call so one call never runs long.
while n < max and popped < max + 100 do
  local entry = redis.call('LPOP', KEYS[1])
  if not entry then break end
  popped = popped + 1
  -- rsplit(':', 2): a task name may contain ':'.
  local name, uuid, priority = string.match(entry,
    '^(.+):(%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x):(%-?%d+)$')
  if not name then
    dead(entry, nil, 'malformed queue entry: expected "<task_name>:<uuid>:<priority>"')
  else
    local key = prefix .. uuid
    local kind = redis.call('TYPE', key)['ok']
    if kind ~= 'hash' then
      dead(entry, uuid, kind == 'none' and 'the task record is missing' or ('the task record is a ' .. kind .. ', not a hash'))
    else
      local status = redis.call('HGET', key, 'status')
      if status == 'cancel' then
        -- Cancelled while queued: nothing to run.
      elseif status ~= 'new' then
        dead(entry, uuid, 'queue entry of a task whose status is ' .. tostring(status))
      else
        redis.call('ZADD', KEYS[2], tonumber(priority), entry)
        redis.call('SADD', holds, entry)
        redis.call('HSET', key, 'status', 'process', 'updated_at', now_s)
        taken[#taken + 1] = entry
        taken[#taken + 1] = redis.call('HGETALL', key)
        n = n + 1
      end
    end
  end
end

local next_ms = -1
local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
if first[2] then next_ms = tonumber(first[2]) end
local h = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if h[2] and h[1] ~= holder and (next_ms < 0 or tonumber(h[2]) < next_ms) then next_ms = tonumber(h[2]) end
return { taken, next_ms }
