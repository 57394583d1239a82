-- EXTEND: renews the leases of tasks still in flight, and reads the cancel
-- requests stored for those tasks.
--
-- KEYS: 1 inflight.
-- ARGV: 1 lease (ms), 2 record key prefix, then the uuids.
-- Returns {leases renewed, {uuid, reason, ...}}.

local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local n, cancels = 0, {}
for i = 3, #ARGV do
  n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', deadline, ARGV[i])
  local reason = redis.call('HGET', ARGV[2] .. ARGV[i], 'cancel')
  if reason then
    cancels[#cancels + 1] = ARGV[i]
    cancels[#cancels + 1] = reason
  end
end
return {n, cancels}
