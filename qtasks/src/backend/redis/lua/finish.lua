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
-- KEYS: 1 record, 2 queue, 3 inflight, 4 held, 5 stats.
-- ARGV: 1 data, 2 status, 3 retention (ms, 0 = keep), 4 done channel,
--       5 uuid, 6 stats field (empty: not counted), 7 run (empty: not
--       known, not fenced), 8 holder set prefix (`P holds:`).
-- Returns 1 if written, 0 if not; plus 2 if the run was stale; or, if the
-- record key is not a hash, {its type, the queue entry or false}: the
-- task is released and the caller files the final record as a dead letter.

local id = ARGV[5]
local entry = redis.call('HGET', KEYS[4], id)
local function release(holder)
  if entry then
    redis.call('ZREM', KEYS[2], entry)
    redis.call('HDEL', KEYS[4], id)
  end
  redis.call('ZREM', KEYS[3], id)
  if holder then redis.call('SREM', ARGV[8] .. holder, id) end
end

local rec = fields(KEYS[1], 'status', 'run', 'holder')
if not rec then
  release(nil)
  return {redis.call('TYPE', KEYS[1]).ok, entry}
end
local stale = ARGV[7] ~= '' and rec[2] and rec[2] ~= ARGV[7]
if done(rec[1]) then
  -- Nobody can hold a done task: whatever is left of this one goes.
  release(rec[3])
  return stale and 2 or 0
end
if stale and redis.call('ZSCORE', KEYS[3], id) then
  -- Another run holds it now: that run ends it.
  return 2
end
-- `entry` stays: only a `new` record's is ever read (by CANCEL).
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'data', ARGV[1])
if tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('PERSIST', KEYS[1])
end
release(rec[3])
if ARGV[6] ~= '' then redis.call('HINCRBY', KEYS[5], ARGV[6], 1) end
redis.call('PUBLISH', ARGV[4], id)
return stale and 3 or 1
