-- FETCH: marks this holder alive, moves the due delayed tasks of the
-- queues it takes from into them, takes back the tasks of expired leases
-- and of holders whose liveness expired (requeued at their old place in
-- their own queue, their slots freed; those whose cancel was requested are
-- kept to be ended `cancel`), then takes up to ARGV[1] tasks under this
-- holder from the queues in the order given, and marks their records
-- `process`.
--
-- Queues: a paused one (in `P paused`) gives nothing; a later queue gives
-- only while the ones before it have nothing to give. Without limits the
-- entries are popped in order. With limits each entry is looked at in
-- place (up to `batch` past those wanted, per queue) and stays, at its
-- place, while its task is over a limit: a concurrency limit (of its task
-- name, its queue, or its task's concurrency key) whose slot set is full,
-- or a rate whose token bucket is empty. A task that starts takes a token
-- from each bucket and a slot in each set; the record's `slots` field
-- lists the sets, which `let_go` (lua/common.lua) leaves when the task
-- ends, is released or its lease is taken back.
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
-- KEYS: 1 inflight, 2 held, 3 dead, 4 holders, 5 stats, 6 alive (when a
--       holder was last seen, ms), 7 paused.
-- ARGV: 1 max, 2 lease (ms), 3 app prefix `P`, 4 dead letters kept,
--       5 expired leases requeued, delayed tasks promoted and dead holders
--       reaped at most, 6 this holder's id, 7 liveness (ms), 8 the number
--       of queues n, then the n queue names in order, then the number of
--       limits m, then m sextuples: `t` (a task name) or `q` (a queue),
--       its name, concurrency (0 = none), rate count (0 = none), rate
--       period (ms), per concurrency key (0 = none; task names only).
-- Returns {ms until the next lease deadline, delayed task, token or holder
--          liveness deadline, or -1; dead letters filed;
--          {uuid, data, run, ...} taken;
--          {uuid, data, reason, run, ...} to end `cancel`;
--          {uuid, data or '', reason, run, ...} to end `error`}.

local now, now_us = clock()
local batch = tonumber(ARGV[5])
-- Written once per task taken: formatted once here (a number argument is
-- formatted again at every call).
local deadline = string.format('%d', now + tonumber(ARGV[2]))
now_us = string.format('%d', now_us)
local P, me = ARGV[3], ARGV[6]
local prefix, holds = P .. 'task:', P .. 'holds:'
local INFLIGHT, HELD, DEAD, HOLDERS, STATS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
seen(HOLDERS, KEYS[6], now, tonumber(ARGV[7]))
redis.call('ZADD', HOLDERS, now + tonumber(ARGV[7]), me)

local queues = {}
local n = tonumber(ARGV[8])
for i = 1, n do queues[i] = ARGV[8 + i] end
-- Limits by `t{name}` / `q{name}`: {concurrency, rate count, period ms, per key}.
local limits, limited = {}, false
local m = tonumber(ARGV[9 + n])
for i = 0, m - 1 do
  local at = 10 + n + i * 6
  limits[ARGV[at] .. ARGV[at + 1]] = {
    tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4]), tonumber(ARGV[at + 5]),
  }
  limited = true
end

-- The soonest time, in ms from now, something may become takeable.
local next_ms = -1
local function due_in(ms)
  ms = math.max(0, ms)
  if next_ms < 0 or ms < next_ms then next_ms = ms end
end

local dead = 0
local function bury(entry, id, reason)
  redis.call('RPUSH', DEAD, cjson.encode({
    entry = entry, uuid = id or cjson.null, reason = reason, at = now / 1000,
  }))
  dead = dead + 1
end

-- Writes batched at the end: ZADD inflight, HSET held, SADD holds, SADD
-- to each queue's set of tasks in flight, and the listing's index moves.
local inflight_args, held_args, holds_args, running_args, moves = {}, {}, {}, {}, {}
-- Taken by this call (in flight once the batched writes are done).
local held_now = {}
-- Takes a task of queue `q` under this holder: a new run (the fencing
-- token), after the run `previous` (the record's `run` field as read);
-- `at` is the record's `at` field as read (see `reindex`, lua/common.lua).
local function hold(id, entry, key, previous, q, at)
  local run = (tonumber(previous) or 0) + 1
  redis.call('HSET', key, 'status', 'process', 'started', now_us, 'holder', me, 'run', run)
  index_move(moves, 'new', 'process', id, at)
  inflight_args[#inflight_args + 1] = deadline
  inflight_args[#inflight_args + 1] = id
  if entry then
    held_args[#held_args + 1] = id
    held_args[#held_args + 1] = entry
  end
  holds_args[#holds_args + 1] = id
  held_now[id] = true
  local _, _, _, running = queue_keys(P, q)
  later(running_args, running, id)
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
-- place in its queue with its slots freed, or, if a cancel was requested,
-- kept to end `cancel`.
local function reclaim(id)
  local key = prefix .. id
  local rec = fields(key, 'status', 'data', 'cancel', 'holder', 'run', 'entry', 'queue', 'at')
  if rec and rec[4] then redis.call('SREM', holds .. rec[4], id) end
  local entry = redis.call('HGET', HELD, id) or (rec and rec[6])
  if rec and rec[2] and rec[3] and not done(rec[1]) then
    to_cancel(id, rec[2], rec[3], hold(id, entry, key, rec[5], rec[7], rec[8]))
  else
    -- Its `held` entry stays: a late finish of the run removes the requeued copy.
    redis.call('ZREM', INFLIGHT, id)
    let_go(P, key, id)
    if rec then redis.call('HDEL', key, 'holder') end
    local queue, _, wake = queue_keys(P, rec and rec[7])
    if entry then
      redis.call('ZADD', queue, 0, entry)
      wake_up(wake)
    end
  end
end

for _, q in ipairs(queues) do
  local queue, delayed = queue_keys(P, q)
  for _, entry in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, batch)) do
    redis.call('ZREM', delayed, entry)
    redis.call('ZADD', queue, 0, entry)
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', INFLIGHT, '-inf', now, 'LIMIT', 0, batch)) do
  reclaim(id)
end
for _, holder in ipairs(redis.call('ZRANGEBYSCORE', HOLDERS, '-inf', now, 'LIMIT', 0, batch)) do
  for _, id in ipairs(redis.call('SMEMBERS', holds .. holder)) do
    local rec = fields(prefix .. id, 'holder')
    if rec and rec[1] == holder and redis.call('ZSCORE', INFLIGHT, id) then reclaim(id) end
  end
  redis.call('DEL', holds .. holder)
  redis.call('ZREM', HOLDERS, holder)
end

-- Limits. A slot set or bucket is named by its scope: `t:{task}`,
-- `q:{queue}` or `k:{task}\31{key}`, after its length.
local function scoped(kind, scope)
  return P .. kind .. ':' .. #scope .. ':' .. scope
end
-- Slot sets looked over in this call: members no longer in flight (a task
-- flushed or lost while it held a slot) are dropped once.
local checked = {}
local function full(set, max)
  if redis.call('SCARD', set) < max then return false end
  if not checked[set] then
    checked[set] = true
    for _, id in ipairs(redis.call('SMEMBERS', set)) do
      if not held_now[id] and not redis.call('ZSCORE', INFLIGHT, id) then redis.call('SREM', set, id) end
    end
  end
  return redis.call('SCARD', set) >= max
end
-- A token bucket's tokens now (it holds at most `count`, refilled at
-- `count` per `period`): {tokens, key}.
local function tokens(scope, count, period)
  local key = scoped('bucket', scope)
  local b = redis.call('HMGET', key, 'tokens', 'at')
  local have, at = tonumber(b[1]), tonumber(b[2])
  if not have or not at then return count, key end
  return math.min(count, have + math.max(0, now - at) * count / period), key
end
-- The slot sets task `name` of queue `q` (concurrency key `lkey`) takes
-- if it may start now, with its tokens taken; nil if it is over a limit.
local function admit(name, q, lkey)
  local sets, buckets, blocked = {}, {}, false
  local function scope(kind, own, limit)
    if not limit then return end
    local sc = kind .. ':' .. own
    if limit[1] > 0 then
      local set = scoped('slots', sc)
      if full(set, limit[1]) then blocked = true end
      sets[#sets + 1] = set
    end
    if limit[2] > 0 then
      local have, key = tokens(sc, limit[2], limit[3])
      if have < 1 then
        blocked = true
        due_in(math.ceil((1 - have) * limit[3] / limit[2]))
      end
      buckets[#buckets + 1] = {key, have, limit[3]}
    end
  end
  local tl = limits['t' .. name]
  scope('t', name, tl)
  scope('q', q, limits['q' .. q])
  if tl and tl[4] > 0 and lkey then
    local set = scoped('slots', 'k:' .. name .. '\31' .. lkey)
    if full(set, tl[4]) then blocked = true end
    sets[#sets + 1] = set
  end
  if blocked then return nil end
  for _, b in ipairs(buckets) do
    redis.call('HSET', b[1], 'tokens', tostring(b[2] - 1), 'at', now)
    redis.call('PEXPIRE', b[1], b[3] + 1000)
  end
  return sets
end

local uuid = '(%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x)$'
local well_formed = '^' .. string.rep('%x', 32) .. uuid
local want = tonumber(ARGV[1])
local taken, out, corrupt = 0, {}, {}
-- Held by a run now: in flight (a `holder` field alone may be stale).
local function held(id, rec)
  return rec[5] and redis.call('ZSCORE', INFLIGHT, id)
end
local function give_up(id, entry, key, rec, reason, q)
  local run = hold(id, entry, key, rec[6], q, rec[7])
  corrupt[#corrupt + 1] = id
  corrupt[#corrupt + 1] = rec[2] or ''
  corrupt[#corrupt + 1] = reason
  corrupt[#corrupt + 1] = run
end
-- The task name and concurrency key in a record's JSON `data`, or nil.
local function name_of(data)
  local ok, task = pcall(cjson.decode, data)
  if ok and type(task) == 'table' and type(task.task_name) == 'string' then
    return task.task_name, type(task.limit_key) == 'string' and task.limit_key or nil
  end
end
-- The fields of record `key` that `examine` judges an entry by, or nil
-- (see `fields`): 1 status, 2 data, 3 cancel, 4 entry, 5 holder, 6 run, 7 at.
local function record_of(key)
  return fields(key, 'status', 'data', 'cancel', 'entry', 'holder', 'run', 'at')
end
-- Looks at one entry of queue `q`: takes its task, buries it or drops it.
-- Returns true if the entry stays in the queue (its task is over a limit;
-- only when `check` is set).
local function examine(entry, q, check)
  -- The usual entry: 40 hex digits (priority, place, the uuid's first
  -- group) and the rest of the uuid of a record that names this entry.
  -- Only the others go through the full patterns (slow in Lua).
  local _, hex = string.find(entry, '^%x+')
  local id = hex == 40 and #entry == 68 and string.sub(entry, 33)
  local key = id and prefix .. id
  local rec = id and record_of(key)
  local bad_prefix = false
  if not (rec and rec[4] == entry) then
    local named = id
    id = string.match(entry, well_formed)
    if not id then
      id = string.match(entry, uuid)
      bad_prefix = true
    end
    if id ~= named then
      key = id and prefix .. id
      rec = id and record_of(key)
    end
  end
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
      give_up(id, entry, key, rec, 'malformed queue entry (bad priority prefix)', q)
    end
  elseif done(rec[1]) then
    -- A requeued copy of a task that ended meanwhile.
    redis.call('HDEL', HELD, id)
  elseif rec[4] and rec[4] ~= entry then
    bury(entry, id, 'stale queue entry: the task is queued as ' .. rec[4])
  elseif held(id, rec) then
    bury(entry, id, 'duplicate queue entry: the task is held by a worker')
  elseif not rec[2] then
    give_up(id, entry, key, rec, 'the record has no data field', q)
  elseif rec[3] then
    -- Requeued after its worker was gone, and a cancel was requested.
    to_cancel(id, rec[2], rec[3], hold(id, entry, key, rec[6], q, rec[7]))
  else
    -- The task's name and concurrency key, read from its JSON only when
    -- needed: limits to check, or a duplicate to count.
    local name, lkey
    local sets
    if check then
      name, lkey = name_of(rec[2])
      if name then
        sets = admit(name, q, lkey)
        if not sets then return true end
      end
    end
    -- Taken: the record reads `process` from now on (see `decode_record`).
    local run = hold(id, entry, key, rec[6], q, rec[7])
    if sets and #sets > 0 then
      for _, set in ipairs(sets) do redis.call('SADD', set, id) end
      redis.call('HSET', key, 'slots', table.concat(sets, '\n'))
    end
    if run > 1 then
      -- Another run held it before (its lease was taken back, or it
      -- was released): a duplicate, counted under the task's name.
      if not check then name, lkey = name_of(rec[2]) end
      if name then redis.call('HINCRBY', STATS, name .. '\31duplicates', 1) end
    end
    out[#out + 1] = id
    out[#out + 1] = rec[2]
    out[#out + 1] = run
    taken = taken + 1
  end
  return false
end

for _, q in ipairs(queues) do
  if taken >= want then break end
  local queue, delayed = queue_keys(P, q)
  if redis.call('SISMEMBER', KEYS[7], q) == 0 then
    local examined = 0
    if not limited then
      -- At most `batch` entries beyond those wanted are looked at per queue.
      while taken < want and examined < want + batch do
        -- Taken from the front and removed by rank: `ZPOPMIN` would also
        -- reply the scores (all 0), each formatted as a double.
        local popped = redis.call('ZRANGE', queue, 0, want - taken - 1)
        if #popped == 0 then break end
        redis.call('ZREMRANGEBYRANK', queue, 0, #popped - 1)
        for _, entry in ipairs(popped) do
          examined = examined + 1
          examine(entry, q, false)
        end
      end
    else
      -- Past tasks over their limits, at most 256 more entries per queue.
      local look = want - taken + math.min(batch, 256)
      for _, entry in ipairs(redis.call('ZRANGE', queue, 0, look - 1)) do
        if taken >= want then break end
        if not examine(entry, q, true) then redis.call('ZREM', queue, entry) end
      end
    end
  end
  local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
  if #first > 0 then due_in(tonumber(first[2]) - now) end
end

-- Batched writes.
reindex_all(P, moves)
chunked('ZADD', INFLIGHT, inflight_args)
chunked('HSET', HELD, held_args)
chunked('SADD', holds .. me, holds_args)
for running, ids in pairs(running_args) do chunked('SADD', running, ids) end

if dead > 0 then redis.call('LTRIM', DEAD, -tonumber(ARGV[4]), -1) end
-- Filled up: others may find more. (Not filled: what is left cannot be
-- taken now, and waking others for it would only make them spin.)
if taken >= want then
  for _, q in ipairs(queues) do
    local queue, _, wake = queue_keys(P, q)
    if redis.call('SISMEMBER', KEYS[7], q) == 0 and redis.call('ZCARD', queue) > 0 then wake_up(wake) end
  end
end
for _, key in ipairs({INFLIGHT, HOLDERS}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first > 0 then due_in(tonumber(first[2]) - now) end
end
return {next_ms, dead, out, cancels, corrupt}
