-- FINISH: writes the final (or `retry`) record with its expiry, counts it
-- in the stats, publishes its uuid and releases the task (its lease, its
-- holder's hold and any requeued copy) — unless the record is done
-- already: the first final record stays (a status only moves forward).
--
-- Fenced by the run: a finish from a run whose lease was taken back
-- (ARGV[7] is not the record's `run`) is stale. It never replaces a done
-- record, nor one that another run holds now; it still ends a task that
-- waits in the queue again, unrun (so the task does not run twice).
--
-- Releasing also lets go of the task's place among its queue's tasks in
-- flight and of its concurrency slots (`let_go`, lua/common.lua). Once the
-- task is done its unique key, if it still names it, expires after the
-- key's window (at once without one); enqueues check the window
-- themselves, this only keeps unused keys from piling up.
--
-- KEYS: 1 record, 2 inflight, 3 held, 4 stats.
-- ARGV: 1 data, 2 status, 3 retention (ms, 0 = keep), 4 done channel,
--       5 uuid, 6 stats field (empty: not counted), 7 run (empty: not
--       known, not fenced), 8 holder set prefix (`P holds:`), 9 app
--       prefix `P`.
-- Returns 1 if written, 0 if not; plus 2 if the run was stale; or, if the
-- record key is not a hash, {its type, the queue entry or false}: the
-- task is released and the caller files the final record as a dead letter.

local id, P = ARGV[5], ARGV[9]
local INFLIGHT, HELD = KEYS[2], KEYS[3]
local entry = redis.call('HGET', HELD, id)
local function release(rec)
  if entry then
    local queue = queue_keys(P, rec and rec[4])
    redis.call('ZREM', queue, entry)
    redis.call('HDEL', HELD, id)
  end
  redis.call('ZREM', INFLIGHT, id)
  if rec and rec[3] then redis.call('SREM', ARGV[8] .. rec[3], id) end
  let_go(P, KEYS[1], id)
end

local rec = fields(KEYS[1], 'status', 'run', 'holder', 'queue', 'ukey', 'uwin')
if not rec then
  release(nil)
  return {redis.call('TYPE', KEYS[1]).ok, entry}
end
local stale = ARGV[7] ~= '' and rec[2] and rec[2] ~= ARGV[7]
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
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'data', ARGV[1])
reindex(P, id, rec[1], ARGV[2])
trim_index(P, ARGV[2])
if tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('PERSIST', KEYS[1])
end
release(rec)
if rec[5] and redis.call('GET', rec[5]) == id then
  local window = tonumber(rec[6]) or 0
  if window > 0 then redis.call('PEXPIRE', rec[5], window) else redis.call('DEL', rec[5]) end
end
if ARGV[6] ~= '' then redis.call('HINCRBY', KEYS[4], ARGV[6], 1) end
if ARGV[6] ~= '' then count_minute(KEYS[4], ARGV[6]) end
redis.call('PUBLISH', ARGV[4], id)
return stale and 3 or 1
