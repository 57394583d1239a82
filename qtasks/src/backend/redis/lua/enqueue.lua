-- ENQUEUE: stores new records and queues them (or, with a delay, puts them
-- among their queue's delayed tasks), in order, then wakes the fetchers of
-- each queue that got a task. One task or a whole batch: a later task with
-- the id or unique key of an earlier one is a duplicate of it.
--
-- A task is not written when a record with its id exists (an enqueue
-- retried after an ambiguous error), nor when its unique key is held: by a
-- task not done yet, or by one that ended less than its window ago (the
-- window is read from the holder's `uwin` field, ms; its end from its
-- record's `updated_at`). A key whose holder's record is gone (expired,
-- flushed) is free.
--
-- KEYS: 1 seq, 2 the app's set of queue names.
-- ARGV: 1 app prefix `P`, then per task 9 values: uuid, data (the record
--       as JSON), status, priority hex, delay (ms, 0 = none), queue,
--       unique key (`P unique:…`, empty = none), unique window (ms),
--       created_at (the listing's index score, `P index`, also kept as
--       the record's `at` field so status changes need not look it up;
--       empty: the task stays out of the listing's indexes, see
--       `RedisBackend::listing`).
-- Returns per task: its place in line (the new value of `seq`) if it was
-- written, 0 if a record with its id exists, or the uuid of the task that
-- holds its unique key.

local P = ARGV[1]
local task_prefix = P .. 'task:'
-- The server's time (ms, µs), read once and only if a task needs it: a
-- delayed task, or a unique key's window.
local now_ms, now_us
local function now()
  if not now_ms then now_ms, now_us = clock() end
  return now_ms, now_us
end
local out, woken = {}, {}

-- The task holding unique key `ukey`, if it still holds it.
local function holder_of(ukey)
  local holder = redis.call('GET', ukey)
  if not holder then return nil end
  local rec = fields(task_prefix .. holder, 'status', 'data', 'uwin')
  if not rec or not rec[1] then return nil end
  if not done(rec[1]) then return holder end
  local window = tonumber(rec[3]) or 0
  if window <= 0 then return nil end
  local ok, task = pcall(cjson.decode, rec[2] or '')
  local ended = ok and type(task) == 'table' and tonumber(task.updated_at)
  if ended and select(2, now()) / 1000 - ended * 1000 < window then return holder end
  return nil
end

-- Per queue: its keys, and the entries to add at the end (one ZADD per
-- queue and batch rather than one per task).
local seq = redis.call('INCRBY', KEYS[1], 0)
local written = 0
local queues, adds = {}, {}
local function add(key, score, entry)
  later(adds, key, score)
  later(adds, key, entry)
end

for i = 2, #ARGV, 9 do
  local id, data, status, priority = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local delay, q, ukey, uwin = tonumber(ARGV[i + 4]), ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local created = ARGV[i + 8]
  local key = task_prefix .. id
  local holder = ukey ~= '' and holder_of(ukey)
  if holder then
    out[#out + 1] = holder
  elseif redis.call('EXISTS', key) == 1 then
    out[#out + 1] = 0
  else
    written = written + 1
    local place = seq + written
    local entry = priority .. string.format('%016x', place) .. id
    local keys = queues[q]
    if not keys then
      keys = {queue_keys(P, q)}
      queues[q] = keys
      woken[keys[3]] = true
      if keys[1] ~= P .. 'queue' then redis.call('SADD', KEYS[2], q) end
    end
    if keys[1] == P .. 'queue' then
      redis.call('HSET', key, 'status', status, 'data', data, 'entry', entry, 'at', created)
    else
      redis.call('HSET', key, 'status', status, 'data', data, 'entry', entry, 'at', created, 'queue', q)
    end
    if created ~= '' then
      redis.call('ZADD', P .. 'index', created, id)
      redis.call('ZADD', P .. 'index:' .. status, created, id)
    end
    if ukey ~= '' then
      redis.call('HSET', key, 'ukey', ukey, 'uwin', uwin)
      redis.call('SET', ukey, id)
    end
    if delay > 0 then
      add(keys[2], now() + delay, entry)
    else
      add(keys[1], 0, entry)
    end
    out[#out + 1] = place
  end
end
if written > 0 then redis.call('INCRBY', KEYS[1], written) end
for key, args in pairs(adds) do chunked('ZADD', key, args) end
for wake in pairs(woken) do wake_up(wake) end
return out
