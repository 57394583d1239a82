-- Stores a Celery result (unless a ready result is stored already: the
-- first end stays), then acks the message, kombu's way.
-- KEYS: 1 celery-task-meta-<id>, 2 unacked, 3 unacked_index, 4 stats
-- ARGV: 1 delivery tag, 2 result JSON ('' stores nothing), 3 expiry s,
--       4 stats field ('' counts nothing)
-- Reply: 1 if the result was stored, 0 if not.
local stored = 0
if ARGV[2] ~= '' then
  local existing = redis.call('GET', KEYS[1])
  local ready = false
  if existing then
    local ok, meta = pcall(cjson.decode, existing)
    ready = ok and type(meta) == 'table'
      and (meta.status == 'SUCCESS' or meta.status == 'FAILURE' or meta.status == 'REVOKED')
  end
  if not ready then
    redis.call('SETEX', KEYS[1], ARGV[3], ARGV[2])
    redis.call('PUBLISH', KEYS[1], ARGV[2])
    stored = 1
  end
end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if ARGV[4] ~= '' then redis.call('HINCRBY', KEYS[4], ARGV[4], 1) end
return stored
