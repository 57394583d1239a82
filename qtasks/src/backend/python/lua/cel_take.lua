-- Takes up to ARGV[1] Celery messages from kombu's Redis lists, keeping
-- kombu's `unacked` bookkeeping: each message taken is put in `unacked`
-- (tag -> [envelope, exchange, routing_key]) and `unacked_index`
-- (tag -> delivery time, s) in the same step as its pop.
-- Before that it restores the messages whose delivery is older than the
-- visibility timeout (their worker died) as kombu does, and queues the
-- delayed (ETA) messages that are due.
-- KEYS: 1 unacked, 2 unacked_index, 3 delayed (zset "key\31envelope" ->
--       due ms), 4 dead (list), 5.. the lists to pop, in order
-- ARGV: 1 max, 2 dead letters kept, 3 visibility timeout ms,
--       4 key of a message already popped by BRPOP ('' if none), 5 it
-- Reply: { taken, next_ms }: taken is key, envelope, key, envelope, ...;
--        next_ms the next time (ms, server clock) something is due, or -1.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_s = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local max, visibility = tonumber(ARGV[1]), tonumber(ARGV[3])

local function dead(key, raw, reason)
  redis.call('LPUSH', KEYS[4], cjson.encode({ key = key, entry = raw, reason = reason, at = now_ms / 1000 }))
  redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[2]) - 1)
end

-- kombu: steps[bisect_right([0, 3, 6, 9], priority) - 1], a suffix "\6\22<n>".
local function list_key(queue, priority)
  local p = tonumber(priority) or 0
  local bucket = 0
  for _, step in ipairs({ 3, 6, 9 }) do
    if p >= step then bucket = step end
  end
  if bucket == 0 then return queue end
  return queue .. '\6\22' .. bucket
end

-- Restore: what kombu's restore_visible does at a worker's start.
local stale = redis.call('ZRANGE', KEYS[2], '-inf', '(' .. ((now_ms - visibility) / 1000), 'BYSCORE', 'LIMIT', 0, 16)
for _, tag in ipairs(stale) do
  local value = redis.call('HGET', KEYS[1], tag)
  redis.call('HDEL', KEYS[1], tag)
  redis.call('ZREM', KEYS[2], tag)
  if value then
    local ok, item = pcall(cjson.decode, value)
    if ok and type(item) == 'table' and type(item[1]) == 'table' and type(item[1].properties) == 'table' then
      local env = item[1]
      if type(env.headers) == 'table' then env.headers.redelivered = true end
      local info = env.properties.delivery_info
      if type(info) == 'table' then info.redelivered = true end
      local rk = item[3]
      if type(rk) ~= 'string' or rk == '' then rk = 'celery' end
      redis.call('RPUSH', list_key(rk, env.properties.priority), cjson.encode(env))
    else
      dead('unacked', value, 'an unacked entry that is not [envelope, exchange, routing_key]')
    end
  end
end

-- Delayed messages that are due go to the end BRPOP pops next.
local due = redis.call('ZRANGE', KEYS[3], '-inf', now_ms, 'BYSCORE', 'LIMIT', 0, 100)
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[3], member)
  local sep = string.find(member, '\31', 1, true)
  if sep then
    redis.call('RPUSH', string.sub(member, 1, sep - 1), string.sub(member, sep + 1))
  end
end

local taken = {}
local function adopt(key, raw)
  local ok, env = pcall(cjson.decode, raw)
  if not ok or type(env) ~= 'table' or type(env.properties) ~= 'table' then
    dead(key, raw, 'not a kombu message: the envelope is not a JSON object with properties')
    return false
  end
  local tag = env.properties.delivery_tag
  if type(tag) ~= 'string' and type(tag) ~= 'number' then
    dead(key, raw, 'not a kombu message: no properties.delivery_tag')
    return false
  end
  tag = tostring(tag)
  local info = env.properties.delivery_info
  local exchange, rk = '', key
  if type(info) == 'table' then
    if type(info.exchange) == 'string' then exchange = info.exchange end
    if type(info.routing_key) == 'string' then rk = info.routing_key end
  end
  redis.call('ZADD', KEYS[2], now_s, tag)
  redis.call('HSET', KEYS[1], tag, '[' .. raw .. ', ' .. cjson.encode(exchange) .. ', ' .. cjson.encode(rk) .. ']')
  taken[#taken + 1] = key
  taken[#taken + 1] = raw
  return true
end

local n = 0
if ARGV[4] ~= '' then
  if adopt(ARGV[4], ARGV[5]) then n = n + 1 end
end
local looked = 0
for i = 5, #KEYS do
  while n < max and looked < max + 100 do
    local raw = redis.call('RPOP', KEYS[i])
    if not raw then break end
    looked = looked + 1
    if adopt(KEYS[i], raw) then n = n + 1 end
  end
end

local next_ms = -1
local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if first[2] then next_ms = tonumber(first[2]) end
local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if oldest[2] then
  local at = math.floor(tonumber(oldest[2]) * 1000) + visibility
  if next_ms < 0 or at < next_ms then next_ms = at end
end
return { taken, next_ms }
