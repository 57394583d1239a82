-- UPDATE: writes a non-final status unless the record is already done
-- (final or `retry`) or another run holds the task now (ARGV[5] is not the
-- record's `run`), and renews the lease.
--
-- KEYS: 1 record, 2 inflight.
-- ARGV: 1 data, 2 status, 3 uuid, 4 lease (ms), 5 run (empty: not known).
-- Returns 1 if written, 0 if not.

local rec = fields(KEYS[1], 'status', 'run', 'at')
if not rec or done(rec[1]) then return 0 end
if ARGV[5] ~= '' and rec[2] and rec[2] ~= ARGV[5] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'data', ARGV[1])
-- The record key is `P task:{uuid}`.
reindex(string.sub(KEYS[1], 1, -42), ARGV[3], rec[1], ARGV[2], rec[3])
local now = clock()
redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[4]), ARGV[3])
return 1
