-- FINISH: writes the final (or `retry`) records of a batch of tasks that
-- ended together, in one call. For each task: writes its record with its
-- expiry, publishes its uuid and releases the task (its lease, its
-- holder's hold and any requeued copy) — unless the record is done
-- already: the first final record stays (a status only moves forward).
-- The written ones are counted in the stats once per batch.
--
-- Fenced by the run: a finish from a run whose lease was taken back (its
-- run is not the record's `run`) is stale. It never replaces a done
-- record, nor one that another run holds now; it still ends a task that
-- waits in the queue again, unrun (so the task does not run twice).
--
-- Releasing also lets go of the task's place among its queue's tasks in
-- flight and of its concurrency slots (`let_go`, lua/common.lua). Once the
-- task is done its unique key, if it still names it, expires after the
-- key's window (at once without one); enqueues check the window
-- themselves, this only keeps unused keys from piling up.
--
-- Each task is finished under `pcall`: one whose keys cannot be written
-- (a slot key of another type, say) gets the error's message in its
-- place of the reply and the others go on.
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
-- Per stats field, the tasks written (in the order first seen); per
-- status, the records written.
local counted, fields_seen, statuses = {}, {}, {}

local function finish(key, data, status, id, field, run, retention)
  local entry = redis.call('HGET', HELD, id)
  local function release(rec)
    if entry then
      local queue = queue_keys(P, rec and rec[4])
      redis.call('ZREM', queue, entry)
      redis.call('HDEL', HELD, id)
    end
    redis.call('ZREM', INFLIGHT, id)
    if rec and rec[3] then redis.call('SREM', HOLDS .. rec[3], id) end
    let_go(P, key, id, rec and { rec[4], rec[7] })
  end

  local rec = fields(key, 'status', 'run', 'holder', 'queue', 'ukey', 'uwin', 'slots')
  if not rec then
    release(nil)
    return {redis.call('TYPE', key).ok, entry}
  end
  local stale = run ~= '' and rec[2] and rec[2] ~= run
  if done(rec[1]) then
    -- Nobody can hold a done task: whatever is left of this one goes.
    release(rec)
    return stale and 2 or 0
  end
  if stale and redis.call('ZSCORE', INFLIGHT, id) then
    -- Another run holds it now: that run ends it.
    return 2
  end
  -- `entry` stays: only a `new` record's is ever read (by CANCEL).
  redis.call('HSET', key, 'status', status, 'data', data)
  reindex(P, id, rec[1], status)
  if tonumber(retention) > 0 then
    redis.call('PEXPIRE', key, retention)
  else
    redis.call('PERSIST', key)
  end
  release(rec)
  if rec[5] and redis.call('GET', rec[5]) == id then
    local window = tonumber(rec[6]) or 0
    if window > 0 then redis.call('PEXPIRE', rec[5], window) else redis.call('DEL', rec[5]) end
  end
  statuses[status] = (statuses[status] or 0) + 1
  if field ~= '' then
    if not counted[field] then fields_seen[#fields_seen + 1] = field end
    counted[field] = (counted[field] or 0) + 1
  end
  redis.call('PUBLISH', CHANNEL, id)
  return stale and 3 or 1
end

local out = {}
for i = 1, #KEYS - 3 do
  local a = 3 + (i - 1) * 6
  local ok, res = pcall(finish, KEYS[3 + i], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6])
  if ok then
    out[i] = res
  else
    out[i] = type(res) == 'table' and res.err or tostring(res)
  end
end
for _, field in ipairs(fields_seen) do
  redis.call('HINCRBY', STATS, field, counted[field])
  count_minute(STATS, field, counted[field])
end
for status, n in pairs(statuses) do trim_index(P, status, n) end
return out
