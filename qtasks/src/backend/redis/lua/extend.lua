-- EXTEND: marks this holder alive, renews the leases of the tasks it
-- still holds (in flight, and at the run it took: a lease taken back and
-- given to another run is not renewed), and reads the cancel requests
-- stored for these tasks.
--
-- KEYS: 1 inflight, 2 holders.
-- ARGV: 1 lease (ms), 2 record key prefix, 3 holder id, 4 liveness (ms),
--       then (uuid, run) pairs (run empty: not taken by this holder, so
--       not renewed).
-- Returns {uuids whose lease was renewed, {uuid, reason, ...}}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
local renewed, cancels = {}, {}
for i = 5, #ARGV, 2 do
  local id, run = ARGV[i], ARGV[i + 1]
  local rec = redis.pcall('HMGET', ARGV[2] .. id, 'run', 'cancel')
  if not rec.err then
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
