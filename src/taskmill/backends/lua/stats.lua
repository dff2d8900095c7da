-- A queue's counts per state, flags, and the created_at of its oldest job due now.
-- KEYS: the queue's keys, KEYS[1..10] as listed in common.lua.
-- ARGV[1] -> now
-- Returns {HGETALL of the stats hash, oldest created_at or ''}.
local oldest
local function consider(id)
  local created = tonumber(redis.call('HGET', PREFIX .. id, 'created'))
  if created and (not oldest or created < oldest) then oldest = created end
end
-- Within a priority, the first in seq order is the oldest: look at each priority's first.
local p = 0
while p <= PRIORITY_MAX do
  local low = (PRIORITY_MAX - p) * SEQ_BITS
  local first = redis.call('ZRANGEBYSCORE', READY, num(low), '(' .. num(low + SEQ_BITS), 'LIMIT', 0, 1)
  if first[1] then consider(first[1]) end
  p = p + 1
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', SCHEDULED, '-inf', ARGV[1], 'LIMIT', 0, 1000)) do
  consider(id)
end
local created = ''
if oldest then created = num(oldest) end
return {redis.call('HGETALL', STATS), created}
