-- QUEUES: what the app's queues hold now: per queue its depth (tasks
-- waiting, delayed ones that are due included), its delayed tasks not yet
-- due, its tasks in flight, whether it is paused and when its oldest
-- waiting task was created. With no names given: every queue that got a
-- task or was paused, and the default queue.
--
-- Tasks in flight are the members of the queue's `running` set that are
-- still in flight (in `inflight`); others (left by a task whose record was
-- rewritten or lost while it ran) are dropped here. The oldest waiting
-- task is found among the first entry of each priority level (within a
-- level entries are in enqueue order), up to 64 levels.
--
-- KEYS: 1 inflight, 2 paused, 3 the app's set of queue names.
-- ARGV: 1 app prefix `P`, 2 `1` to skip the oldest task and the check of
--       the tasks in flight (counts only), then the queue names.
-- Returns {name, depth, delayed, in flight, paused (0/1), the oldest
-- waiting task's `created_at` as text or '', ...}.

local P, brief = ARGV[1], ARGV[2] == '1'
local now = clock()
local names = {}
for i = 3, #ARGV do names[#names + 1] = ARGV[i] end
if #names == 0 then
  names = redis.call('SUNION', KEYS[2], KEYS[3])
  local default = false
  for _, q in ipairs(names) do default = default or q == 'default' end
  if not default then names[#names + 1] = 'default' end
end

-- The `created_at` of the oldest task waiting in `queue`, or ''.
local function oldest(queue, prefix)
  local first = redis.call('ZRANGE', queue, 0, 0)
  local best_seq, best_id
  for _ = 1, 64 do
    local entry = first[1]
    if not entry or #entry < 32 then break end
    local level, seq = string.sub(entry, 1, 16), string.sub(entry, 17, 32)
    if not best_seq or seq < best_seq then
      best_seq, best_id = seq, string.sub(entry, 33)
    end
    first = redis.call('ZRANGEBYLEX', queue, '(' .. level .. 'g', '+', 'LIMIT', 0, 1)
  end
  if not best_id then return '' end
  local rec = fields(prefix .. best_id, 'data')
  local ok, task = pcall(cjson.decode, rec and rec[1] or '')
  if ok and type(task) == 'table' and tonumber(task.created_at) then
    return string.format('%.6f', tonumber(task.created_at))
  end
  return ''
end

local out = {}
for _, q in ipairs(names) do
  local queue, delayed, _, running = queue_keys(P, q)
  local due = redis.call('ZCOUNT', delayed, '-inf', now)
  local later = redis.call('ZCARD', delayed) - due
  local in_flight = redis.call('SCARD', running)
  if not brief and in_flight > 0 then
    for _, id in ipairs(redis.call('SMEMBERS', running)) do
      if not redis.call('ZSCORE', KEYS[1], id) then
        redis.call('SREM', running, id)
        in_flight = in_flight - 1
      end
    end
  end
  out[#out + 1] = q
  out[#out + 1] = redis.call('ZCARD', queue) + due
  out[#out + 1] = later
  out[#out + 1] = in_flight
  out[#out + 1] = redis.call('SISMEMBER', KEYS[2], q)
  out[#out + 1] = brief and '' or oldest(queue, P .. 'task:')
end
return out
