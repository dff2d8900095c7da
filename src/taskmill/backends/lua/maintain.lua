-- Upkeep of one queue: delete finished jobs past their result_ttl (not dead ones) and
-- throughput counters older than THROUGHPUT_WINDOW, and list the running jobs whose lease
-- expired, with what the caller needs to decide their rescue (base.rescue()), which
-- rescue.lua then applies.
-- KEYS: the queue's keys, KEYS[1..10] as laid out by redis_scripts.QueueKeys.
-- ARGV[1] -> now
-- ARGV[2] -> most jobs to prune, and to list, per call
-- Returns {ids pruned, the record (record() in common.lua) of each expired lease, the ids of
-- lease entries dropped because their job's hash is gone}. A record the caller cannot read
-- it quarantines (quarantine.lua), by its token.
local pruned, expired, lost = {}, {}, {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', DONE, '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])) do
  local key = JOB .. id
  remove(id, key, redis.call('HGET', key, 'state'))
  pruned[#pruned + 1] = id
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])) do
  local fields = record(JOB .. id, id)
  if #fields == 0 then
    redis.call('ZREM', LEASES, id)
    lost[#lost + 1] = id
  else
    expired[#expired + 1] = fields
  end
end
local stale = {}
for _, field in ipairs(redis.call('HKEYS', STATS)) do
  if string.sub(field, 1, 4) == 'fin:'
      and tonumber(string.sub(field, 5)) <= tonumber(ARGV[1]) - THROUGHPUT_WINDOW then
    stale[#stale + 1] = field
  end
end
if #stale > 0 then redis.call('HDEL', STATS, unpack(stale)) end
return {pruned, expired, lost}
