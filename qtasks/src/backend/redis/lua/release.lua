-- RELEASE: puts tasks this holder took back into the queue at their old
-- place, their records back to `new` (holder and start time cleared), and
-- wakes a fetcher. Only a task still in flight at the run given is
-- released: not one whose lease was taken back meanwhile.
--
-- Mode `release` (`Backend::release`): the task had started; its next
-- run counts as a duplicate. Mode `undo` (a fetch cancelled while its
-- script ran, whose tasks were never handed out): the run is taken back
-- too, with the duplicate it counted if it was one, so the next run counts
-- as what it is.
--
-- A released task goes back to its own queue and lets go of its slots
-- (`let_go`, lua/common.lua).
--
-- KEYS: 1 inflight, 2 held, 3 stats.
-- ARGV: 1 record key prefix, 2 holder set prefix, 3 mode, then (uuid, run,
--       data) triples (data: the `new` record to store, or empty to keep
--       the stored one).
-- Returns how many tasks were put back.

local P = string.sub(ARGV[1], 1, -6)
local woken = {}
local n = 0
for i = 4, #ARGV, 3 do
  local id, run, data = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = ARGV[1] .. id
  local rec = fields(key, 'run', 'holder', 'entry', 'queue', 'at')
  if rec and rec[1] == run and redis.call('ZSCORE', KEYS[1], id) then
    local entry = redis.call('HGET', KEYS[2], id) or rec[3]
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    if rec[2] then redis.call('SREM', ARGV[2] .. rec[2], id) end
    let_go(P, key, id)
    redis.call('HDEL', key, 'holder', 'started')
    redis.call('HSET', key, 'status', 'new')
    reindex(P, id, 'process', 'new', rec[5])
    if data ~= '' then redis.call('HSET', key, 'data', data) end
    if ARGV[3] == 'undo' and redis.call('HINCRBY', key, 'run', -1) > 0 then
      local ok, task = pcall(cjson.decode, redis.call('HGET', key, 'data') or '')
      if ok and type(task) == 'table' and type(task.task_name) == 'string' then
        redis.call('HINCRBY', KEYS[3], task.task_name .. '\31duplicates', -1)
      end
    end
    if entry then
      local queue, _, wake = queue_keys(P, rec[4])
      redis.call('ZADD', queue, 0, entry)
      woken[wake] = true
      n = n + 1
    end
  end
end
for wake in pairs(woken) do wake_up(wake) end
return n
