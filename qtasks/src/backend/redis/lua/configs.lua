-- CONFIGS: reads every live setting of a group through the group's index
-- (a set of its setting names), and drops from the index the names whose
-- key is gone (expired or deleted). Atomic, so a setting written while
-- this runs is never dropped from the index.
--
-- KEYS: 1 the group's index.
-- ARGV: 1 the group's key prefix (`P config:{len}:{name}:`).
-- Returns {name, value, ...} of the live settings.

local names = redis.call('SMEMBERS', KEYS[1])
local out, gone = {}, {}
for i = 1, #names, 1000 do
  local part = {unpack(names, i, math.min(i + 999, #names))}
  local full = {}
  for j, name in ipairs(part) do full[j] = ARGV[1] .. name end
  local values = redis.call('MGET', unpack(full))
  for j, name in ipairs(part) do
    if values[j] then
      out[#out + 1] = name
      out[#out + 1] = values[j]
    else
      gone[#gone + 1] = name
    end
  end
end
chunked('SREM', KEYS[1], gone)
return out
