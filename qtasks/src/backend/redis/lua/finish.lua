-- FINISH: writes the final (or `retry`) records of a batch of tasks that
-- ended together, in one call. For each task: writes its record with its
-- expiry, publishes its uuid and releases the task (its lease, its
-- holder's hold and any requeued copy) — unless the record is done
-- already: the first final record stays (a status only moves forward).
--
-- Fenced by the run: a finish from a run whose lease was taken back (its
-- run is not the record's `run`) is stale. It never replaces a done
-- record, nor one that another run holds now; it still ends a task that
-- waits in the queue again, unrun (so the task does not run twice).
--
-- Releasing also lets go of the task's place among its queue's tasks in
-- flight and of its concurrency slots (`free_slots`, lua/common.lua). Once
-- the task is done its unique key, if it still names it, expires after
-- the key's window (at once without one); enqueues check the window
-- themselves, this only keeps unused keys from piling up.
--
-- The keys of one task (its record, slots and unique key) are written as
-- the task is looked at, under `pcall`: a task whose keys cannot be
-- written (a slot key of another type, say) gets the error's message in
-- its place of the reply and the others go on. What the tasks share is
-- written once for the batch, at the end: removals from `inflight`,
-- `held`, the queues, the holders' and the queues' in-flight sets, the
-- listing's index moves and the stats counters.
--
-- KEYS: 1 inflight, 2 held, 3 stats, then the record of each task.
-- ARGV: 1 done channel, 2 holder set prefix (`P holds:`), 3 app prefix
--       `P`, then 6 per task: data, status, uuid, stats field (empty: not
--       counted), run (empty: not known, not fenced), retention (ms, 0 =
--       keep).
-- Returns, per task: 1 if written, 0 if not; plus 2 if the run was stale;
-- or, if the record key is not a hash, {its type, the queue entry or
-- false}: the task is released and the caller files the final record as a
-- dead letter; or the message of the error that stopped it (a string).

local INFLIGHT, HELD, STATS = KEYS[1], KEYS[2], KEYS[3]
local CHANNEL, HOLDS, P = ARGV[1], ARGV[2], ARGV[3]
local n = #KEYS - 3

-- The queue entries `held` keeps for the tasks (read in one call).
local ids = {}
for i = 1, n do ids[i] = ARGV[3 + (i - 1) * 6 + 3] end
local entries = {}
for i = 1, n, 1000 do
  local part = redis.call('HMGET', HELD, unpack(ids, i, math.min(i + 999, n)))
  for j = 1, #part do entries[i + j - 1] = part[j] end
end

-- Written for the whole batch at the end.
local released, unqueued, unheld, unrun, moves = {}, {}, {}, {}, {}
local counted, fields_seen = {}, {}
local trims = {}

-- Lets go of task `id` (record `key`, queue entry `entry`, the record's
-- fields `rec` as read, or nil): its slots now (its own keys), the rest
-- with the batch.
local function release(key, id, entry, rec)
  local queue, _, wake, running = queue_keys(P, rec and rec[4])
  if entry then
    later(unqueued, queue, entry)
    unheld[#unheld + 1] = id
  end
  released[#released + 1] = id
  if rec and rec[3] then later(unrun, HOLDS .. rec[3], id) end
  later(unrun, running, id)
  if rec then free_slots(key, id, rec[7], wake) end
end

local function finish(i)
  local key, a = KEYS[3 + i], 3 + (i - 1) * 6
  local data, status, id, field, run, retention =
    ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  local entry = entries[i]
  local rec = fields(key, 'status', 'run', 'holder', 'queue', 'ukey', 'uwin', 'slots', 'at')
  if not rec then
    release(key, id, entry, nil)
    return {redis.call('TYPE', key).ok, entry}
  end
  local stale = run ~= '' and rec[2] and rec[2] ~= run
  if done(rec[1]) then
    -- Nobody can hold a done task: whatever is left of this one goes.
    release(key, id, entry, rec)
    return stale and 2 or 0
  end
  if stale and redis.call('ZSCORE', INFLIGHT, id) then
    -- Another run holds it now: that run ends it.
    return 2
  end
  -- `entry` stays: only a `new` record's is ever read (by CANCEL).
  redis.call('HSET', key, 'status', status, 'data', data)
  if tonumber(retention) > 0 then
    redis.call('PEXPIRE', key, retention)
  else
    redis.call('PERSIST', key)
  end
  if rec[5] and redis.call('GET', rec[5]) == id then
    local window = tonumber(rec[6]) or 0
    if window > 0 then redis.call('PEXPIRE', rec[5], window) else redis.call('DEL', rec[5]) end
  end
  index_move(moves, rec[1], status, id, rec[8])
  release(key, id, entry, rec)
  trims[status] = (trims[status] or 0) + 1
  if field ~= '' then
    if not counted[field] then fields_seen[#fields_seen + 1] = field end
    counted[field] = (counted[field] or 0) + 1
  end
  redis.call('PUBLISH', CHANNEL, id)
  return stale and 3 or 1
end

local out = {}
for i = 1, n do
  local ok, res = pcall(finish, i)
  if ok then
    out[i] = res
  else
    out[i] = type(res) == 'table' and res.err or tostring(res)
  end
end

chunked('ZREM', INFLIGHT, released)
chunked('HDEL', HELD, unheld)
for queue, list in pairs(unqueued) do chunked('ZREM', queue, list) end
for set, list in pairs(unrun) do chunked('SREM', set, list) end
reindex_all(P, moves)
for _, field in ipairs(fields_seen) do
  redis.call('HINCRBY', STATS, field, counted[field])
  count_minute(STATS, field, counted[field])
end
for status, count in pairs(trims) do trim_index(P, status, count) end
return out
