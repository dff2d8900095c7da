-- A queue's counts per state, flags and settings, the created_at of its oldest job due now,
-- its due jobs per priority, and how many jobs ended (succeeded or dead) in the last minute.
-- KEYS: the queue's keys, KEYS[1..10] as laid out by redis_scripts.QueueKeys.
-- ARGV[1] -> now
-- Returns {HGETALL of the stats hash, oldest created_at or '', {priority, count} per
-- priority with due jobs (flat), jobs ended within THROUGHPUT_WINDOW}.
local now = tonumber(ARGV[1])
local oldest
local due = {}
local function consider(id)
  local created = tonumber(redis.call('HGET', JOB .. id, 'created'))
  if created and (not oldest or created < oldest) then oldest = created end
end
-- Within a priority, the first in seq order is the oldest: look at each priority's first.
local p = 0
while p <= PRIORITY_MAX do
  local low = (PRIORITY_MAX - p) * SEQ_BITS
  local high = '(' .. num(low + SEQ_BITS)
  local first = redis.call('ZRANGEBYSCORE', READY, num(low), high, 'LIMIT', 0, 1)
  if first[1] then
    consider(first[1])
    due[p] = redis.call('ZCOUNT', READY, num(low), high)
  end
  p = p + 1
end
-- Scheduled jobs whose time has come wait in SCHEDULED until a claim moves them.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', SCHEDULED, '-inf', ARGV[1], 'LIMIT', 0, 1000)) do
  consider(id)
  local exists, priority = unpack(redis.call('HMGET', JOB .. id, 'state', 'priority'))
  if exists then
    priority = tonumber(priority) or DEFAULT_PRIORITY
    due[priority] = (due[priority] or 0) + 1
  end
end
local created = ''
if oldest then created = num(oldest) end
local by_priority = {}
for priority, count in pairs(due) do
  by_priority[#by_priority + 1] = priority
  by_priority[#by_priority + 1] = count
end
local fields = {}
for second = math.floor(now) - THROUGHPUT_WINDOW + 1, math.floor(now) do
  fields[#fields + 1] = 'fin:' .. second
end
local recent = 0
for _, count in ipairs(redis.call('HMGET', STATS, unpack(fields))) do
  if count then recent = recent + tonumber(count) end
end
return {redis.call('HGETALL', STATS), created, by_priority, recent}
