-- EXTEND: marks this holder alive (if still registered), renews the leases of the tasks it
-- still holds (in flight, and at the run it took: a lease taken back and
-- given to another run is not renewed), and reads the cancel requests
-- stored for these tasks.
--
-- After a gap with no holder seen, liveness is renewed, not judged
-- (`seen`, lua/common.lua).
--
-- KEYS: 1 inflight, 2 holders, 3 alive (when a holder was last seen, ms).
-- ARGV: 1 lease (ms), 2 record key prefix, 3 holder id, 4 liveness (ms),
--       then (uuid, run) pairs (run empty: not taken by this holder, so
--       not renewed).
-- Returns {uuids whose lease was renewed, {uuid, reason, ...}}.

local now = clock()
local deadline = now + tonumber(ARGV[1])
if redis.call('ZSCORE', KEYS[2], ARGV[3]) then
  seen(KEYS[2], KEYS[3], now, tonumber(ARGV[4]))
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
end
local renewed, cancels = {}, {}
for i = 5, #ARGV, 2 do
  local id, run = ARGV[i], ARGV[i + 1]
  local rec = fields(ARGV[2] .. id, 'run', 'cancel')
  if rec then
    if redis.call('ZSCORE', KEYS[1], id) and run ~= '' and rec[1] == run then
      redis.call('ZADD', KEYS[1], deadline, id)
      renewed[#renewed + 1] = id
    end
    if rec[2] then
      cancels[#cancels + 1] = id
      cancels[#cancels + 1] = rec[2]
    end
  end
end
return {renewed, cancels}
