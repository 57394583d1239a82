-- Helpers shared by the scripts: `scripts.rs` puts this file in front of
-- each of them (a script cannot call another).

-- Whether a status is final, or `retry`: the task's run has ended.
local function done(status)
  return status == 'success' or status == 'error' or status == 'cancel' or status == 'retry'
end

-- A record's fields, or nil when the key holds another type than a hash
-- (a `pcall`: a script that fails keeps the writes it made before).
local function fields(key, ...)
  local rec = redis.pcall('HMGET', key, ...)
  if rec.err then return nil end
  return rec
end

-- The server's time, in ms and in µs.
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Notes that a holder was seen at `now` (in the string at `alive`). After a
-- gap in which no holder was seen (the server was down or unreachable, or
-- no worker ran) for more than half a `liveness`, every holder's deadline
-- in `holders` is stale: all get a fresh liveness instead of being taken
-- for dead, so live workers that come back in time keep their tasks.
local function seen(holders, alive, now, liveness)
  local last = tonumber(redis.call('GET', alive))
  if last and now - last > liveness / 2 then
    for _, h in ipairs(redis.call('ZRANGE', holders, 0, -1)) do
      redis.call('ZADD', holders, now + liveness, h)
    end
  end
  redis.call('SET', alive, now)
end


-- The keys of queue `q` of the app whose keys start with `P`: its queue,
-- its delayed tasks, its wake-up list and the set of its tasks in flight.
-- The default queue (also a record without a `queue` field) keeps the
-- names it had before queues had names; another queue's keys go on with
-- the length of its name, so they never match an app named `{app}:queue`.
-- Made once per queue and call (a script runs for one app, one `P`:
-- the keys are cached by queue name alone).
local queue_keys_made = {}
local function queue_keys(P, q)
  if not q or q == '' then q = 'default' end
  local keys = queue_keys_made[q]
  if not keys then
    if q == 'default' then
      keys = {P .. 'queue', P .. 'delayed', P .. 'wake', P .. 'running:7:default'}
    else
      local tail = #q .. ':' .. q
      keys = {P .. 'queue:' .. tail, P .. 'delayed:' .. tail, P .. 'wake:' .. tail, P .. 'running:' .. tail}
    end
    queue_keys_made[q] = keys
  end
  return keys[1], keys[2], keys[3], keys[4]
end

-- The task listing's indexes (`Backend::list_tasks`): `P index` holds
-- every task, `P index:{status}` the tasks with that status, each scored by
-- the task's `created_at` (written by ENQUEUE, which also keeps it in the
-- record's `at` field, empty for a task left out of the indexes). Moves
-- task `id` from the index of status `from` to that of `to`. `at` is the
-- record's `at` field as read: without one (a record written before the
-- field existed) the score is looked up, and a task not in `P index`
-- (enqueued before the indexes existed) stays out of them.
local function reindex(P, id, from, to, at)
  if from == to or at == '' then return end
  at = at or redis.call('ZSCORE', P .. 'index', id)
  if not at then return end
  if from then redis.call('ZREM', P .. 'index:' .. from, id) end
  redis.call('ZADD', P .. 'index:' .. to, at, id)
end

-- Runs `cmd key arg…` over `args` in chunks small enough for `unpack`.
local function chunked(cmd, key, args)
  for i = 1, #args, 1000 do
    redis.call(cmd, key, unpack(args, i, math.min(i + 999, #args)))
  end
end

-- Appends `value` to the list under `key` in `map` (a list of values per
-- key, for writes made later in one call per key).
local function later(map, key, value)
  local list = map[key]
  if not list then
    list = {}
    map[key] = list
  end
  list[#list + 1] = value
end

-- Notes in `moves` that task `id` (its record's `at` field as read) moves
-- from the index of status `from` to that of `to`, for `reindex_all`.
local function index_move(moves, from, to, id, at)
  if from == to or at == '' then return end
  local key = (from or '') .. '\31' .. to
  local move = moves[key]
  if not move then
    move = {ids = {}, adds = {}, unknown = {}}
    moves[key] = move
  end
  move.ids[#move.ids + 1] = id
  if at then
    move.adds[#move.adds + 1] = at
    move.adds[#move.adds + 1] = id
  else
    move.unknown[#move.unknown + 1] = id
  end
end

-- `reindex` for the tasks noted by `index_move`, in a few calls per move;
-- the scores of records without an `at` field are looked up together.
local function reindex_all(P, moves)
  for key, move in pairs(moves) do
    local from, to = string.match(key, '^(.-)\31(.*)$')
    local adds, unknown = move.adds, move.unknown
    for i = 1, #unknown, 1000 do
      local part = {unpack(unknown, i, math.min(i + 999, #unknown))}
      local at = redis.call('ZMSCORE', P .. 'index', unpack(part))
      for j, id in ipairs(part) do
        if at[j] then
          adds[#adds + 1] = at[j]
          adds[#adds + 1] = id
        end
      end
    end
    if from ~= '' then chunked('ZREM', P .. 'index:' .. from, move.ids) end
    chunked('ZADD', P .. 'index:' .. to, adds)
  end
end

-- Trims the listing's indexes as the retention removes records: drops
-- from `P index:{status}` and `P index` the oldest tasks whose record is
-- gone, stopping at the first that still exists (at most 8 per finish it
-- stands for, `finishes` (default 1), so a finish pays for a few at most).
local function trim_index(P, status, finishes)
  local key = P .. 'index:' .. status
  for _ = 1, finishes or 1 do
    local ids = redis.call('ZRANGE', key, 0, 7)
    for _, id in ipairs(ids) do
      if redis.call('EXISTS', P .. 'task:' .. id) == 1 then return end
      redis.call('ZREM', key, id)
      redis.call('ZREM', P .. 'index', id)
    end
    if #ids < 8 then return end
  end
end

-- Leaves one wake-up token for the fetchers blocked on `wake`.
local function wake_up(wake)
  redis.call('RPUSH', wake, '1')
  redis.call('LTRIM', wake, 0, 0)
end

-- Lets go of the concurrency slots listed in `slots` (the record's
-- `slots` field) that task `id` (record `key`) holds, and wakes a fetcher
-- of its queue (`wake`): a task waiting for a slot may start now.
local function free_slots(key, id, slots, wake)
  if not slots then return end
  for slot in string.gmatch(slots, '[^\n]+') do
    redis.call('SREM', slot, id)
  end
  redis.call('HDEL', key, 'slots')
  wake_up(wake)
end

-- Lets go of what a taken task holds beside its lease: its place among its
-- queue's tasks in flight and its concurrency slots (sets of uuids, so
-- letting go twice is harmless).
local function let_go(P, key, id)
  local rec = fields(key, 'queue', 'slots')
  local _, _, wake, running = queue_keys(P, rec and rec[1])
  redis.call('SREM', running, id)
  free_slots(key, id, rec and rec[2], wake)
end

-- Counts `n` (default 1) runs that ended now in the hash of the current
-- minute (server clock), `{stats}:{minutes since the epoch}`, under the
-- status part of their `stats` field; the hash expires 65 minutes later.
local function count_minute(stats, field, n)
  local key = stats .. ':' .. math.floor(tonumber(redis.call('TIME')[1]) / 60)
  redis.call('HINCRBY', key, string.match(field, '[^\31]*$'), n or 1)
  redis.call('EXPIRE', key, 3900)
end
