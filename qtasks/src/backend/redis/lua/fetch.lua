-- FETCH: marks this holder alive, moves due delayed tasks into the queue,
-- takes back the tasks of expired leases and of holders whose liveness
-- expired (requeued at their old place; those whose cancel was requested
-- are kept to be ended `cancel`), then takes up to ARGV[1] tasks under
-- this holder and marks their records `process`.
--
-- Every queue entry is checked before it is touched, and every access to a
-- record key is a `pcall`, so one bad entry never fails the script half-way
-- (a script that fails keeps the writes it made: entries popped before the
-- error would be lost). A malformed entry, or one whose record is missing
-- or not a hash, goes to the dead letters; a record that is a hash but
-- cannot be run (no `data`, or its own entry malformed) is taken and
-- returned to the caller, which ends it `error` (lua/bury.lua).
--
-- After a gap with no holder seen, liveness is renewed, not judged
-- (`seen`, lua/common.lua).
--
-- KEYS: 1 queue, 2 inflight, 3 held, 4 wake, 5 dead, 6 delayed, 7 holders,
--       8 stats, 9 alive (when a holder was last seen, ms).
-- ARGV: 1 max, 2 lease (ms), 3 record key prefix (`P task:`),
--       4 dead letters kept, 5 expired leases requeued, delayed tasks
--       promoted and dead holders reaped at most, 6 this holder's id,
--       7 liveness (ms), 8 holder set prefix (`P holds:`).
-- Returns {ms until the next lease deadline, delayed task or holder
--          liveness deadline, or -1; dead letters filed;
--          {uuid, data, run, ...} taken;
--          {uuid, data, reason, run, ...} to end `cancel`;
--          {uuid, data or '', reason, run, ...} to end `error`}.

local now, now_us = clock()
local batch = tonumber(ARGV[5])
local deadline = now + tonumber(ARGV[2])
local prefix, me, holds = ARGV[3], ARGV[6], ARGV[8]
seen(KEYS[7], KEYS[9], now, tonumber(ARGV[7]))
redis.call('ZADD', KEYS[7], now + tonumber(ARGV[7]), me)

local dead = 0
local function bury(entry, id, reason)
  redis.call('RPUSH', KEYS[5], cjson.encode({
    entry = entry, uuid = id or cjson.null, reason = reason, at = now / 1000,
  }))
  dead = dead + 1
end

-- Writes batched at the end: ZADD inflight, HSET held, SADD holds.
local inflight_args, held_args, holds_args = {}, {}, {}
-- Takes a task under this holder: a new run (the fencing token), after
-- the run `previous` (the record's `run` field as read).
local function hold(id, entry, key, previous)
  local run = (tonumber(previous) or 0) + 1
  redis.call('HSET', key, 'status', 'process', 'started', now_us, 'holder', me, 'run', run)
  inflight_args[#inflight_args + 1] = deadline
  inflight_args[#inflight_args + 1] = id
  if entry then
    held_args[#held_args + 1] = id
    held_args[#held_args + 1] = entry
  end
  holds_args[#holds_args + 1] = id
  return run
end

local cancels = {}
local function to_cancel(id, data, reason, run)
  cancels[#cancels + 1] = id
  cancels[#cancels + 1] = data
  cancels[#cancels + 1] = reason
  cancels[#cancels + 1] = run
end
-- A task whose lease expired or whose holder is gone: back at its old
-- place in the queue, or, if a cancel was requested, kept to end `cancel`.
local function reclaim(id)
  local key = prefix .. id
  local rec = fields(key, 'status', 'data', 'cancel', 'holder', 'run', 'entry')
  if rec and rec[4] then redis.call('SREM', holds .. rec[4], id) end
  local entry = redis.call('HGET', KEYS[3], id) or (rec and rec[6])
  if rec and rec[2] and rec[3] and not done(rec[1]) then
    to_cancel(id, rec[2], rec[3], hold(id, entry, key, rec[5]))
  else
    redis.call('ZREM', KEYS[2], id)
    if rec then redis.call('HDEL', key, 'holder') end
    if entry then redis.call('ZADD', KEYS[1], 0, entry) end
  end
end

local due = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now, 'LIMIT', 0, batch)
for _, entry in ipairs(due) do
  redis.call('ZREM', KEYS[6], entry)
  redis.call('ZADD', KEYS[1], 0, entry)
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, batch)) do
  reclaim(id)
end
for _, holder in ipairs(redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', now, 'LIMIT', 0, batch)) do
  for _, id in ipairs(redis.call('SMEMBERS', holds .. holder)) do
    local rec = fields(prefix .. id, 'holder')
    if rec and rec[1] == holder and redis.call('ZSCORE', KEYS[2], id) then reclaim(id) end
  end
  redis.call('DEL', holds .. holder)
  redis.call('ZREM', KEYS[7], holder)
end

local uuid = '(%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x)$'
local well_formed = '^' .. string.rep('%x', 32) .. uuid
local want = tonumber(ARGV[1])
local taken, examined, out, corrupt = 0, 0, {}, {}
-- Held by a run now: in flight (a `holder` field alone may be stale).
local function held(id, rec)
  return rec[5] and redis.call('ZSCORE', KEYS[2], id)
end
local function give_up(id, entry, key, rec, reason)
  local run = hold(id, entry, key, rec[6])
  corrupt[#corrupt + 1] = id
  corrupt[#corrupt + 1] = rec[2] or ''
  corrupt[#corrupt + 1] = reason
  corrupt[#corrupt + 1] = run
end
-- At most `batch` entries beyond those wanted are looked at per call.
while taken < want and examined < want + batch do
  local popped = redis.call('ZPOPMIN', KEYS[1], want - taken)
  if #popped == 0 then break end
  for i = 1, #popped, 2 do
    examined = examined + 1
    local entry = popped[i]
    local id = string.match(entry, well_formed)
    local bad_prefix = false
    if not id then
      id = string.match(entry, uuid)
      bad_prefix = true
    end
    local key = id and prefix .. id
    local rec = id and fields(key, 'status', 'data', 'cancel', 'entry', 'holder', 'run')
    if not id then
      bury(entry, nil, 'malformed queue entry')
    elseif not rec then
      bury(entry, id, 'the record key holds a ' .. redis.call('TYPE', key).ok .. ', not a task record (a hash)')
    elseif not rec[1] and not rec[2] and redis.call('EXISTS', key) == 0 then
      bury(entry, id, 'no record for this task')
    elseif bad_prefix then
      if done(rec[1]) or held(id, rec) or (rec[4] and rec[4] ~= entry) then
        -- Not this record's entry: garbage, the record is left alone.
        bury(entry, id, 'malformed queue entry (bad priority prefix)')
      else
        give_up(id, entry, key, rec, 'malformed queue entry (bad priority prefix)')
      end
    elseif done(rec[1]) then
      -- A requeued copy of a task that ended meanwhile.
      redis.call('HDEL', KEYS[3], id)
    elseif rec[4] and rec[4] ~= entry then
      bury(entry, id, 'stale queue entry: the task is queued as ' .. rec[4])
    elseif held(id, rec) then
      bury(entry, id, 'duplicate queue entry: the task is held by a worker')
    elseif not rec[2] then
      give_up(id, entry, key, rec, 'the record has no data field')
    elseif rec[3] then
      -- Requeued after its worker was gone, and a cancel was requested.
      to_cancel(id, rec[2], rec[3], hold(id, entry, key, rec[6]))
    else
      -- Taken: the record reads `process` from now on (see `decode_record`).
      local run = hold(id, entry, key, rec[6])
      if run > 1 then
        -- Another run held it before (its lease was taken back, or it
        -- was released): a duplicate, counted under the task's name.
        local ok, task = pcall(cjson.decode, rec[2])
        if ok and type(task) == 'table' and type(task.task_name) == 'string' then
          redis.call('HINCRBY', KEYS[8], task.task_name .. '\31duplicates', 1)
        end
      end
      out[#out + 1] = id
      out[#out + 1] = rec[2]
      out[#out + 1] = run
      taken = taken + 1
    end
  end
end

-- Batched writes, in chunks small enough for `unpack`.
local function chunked(cmd, key, args)
  for i = 1, #args, 1000 do
    redis.call(cmd, key, unpack(args, i, math.min(i + 999, #args)))
  end
end
chunked('ZADD', KEYS[2], inflight_args)
chunked('HSET', KEYS[3], held_args)
chunked('SADD', holds .. me, holds_args)

if dead > 0 then redis.call('LTRIM', KEYS[5], -tonumber(ARGV[4]), -1) end
if redis.call('ZCARD', KEYS[1]) > 0 then
  redis.call('RPUSH', KEYS[4], '1')
  redis.call('LTRIM', KEYS[4], 0, 0)
end
local next_ms = -1
for _, key in ipairs({KEYS[2], KEYS[6], KEYS[7]}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first > 0 then
    local ms = math.max(0, tonumber(first[2]) - now)
    if next_ms < 0 or ms < next_ms then next_ms = ms end
  end
end
return {next_ms, dead, out, cancels, corrupt}
