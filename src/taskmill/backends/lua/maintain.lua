-- Upkeep of one queue: delete finished jobs past their result_ttl (not dead ones) and
-- throughput counters older than THROUGHPUT_WINDOW, and list the running jobs whose lease
-- expired, with what the caller needs to decide their rescue (base.rescue()), which
-- rescue.lua then applies.
-- KEYS: the queue's keys, KEYS[1..10] as laid out by redis_scripts.QueueKeys.
-- ARGV[1] -> now
-- ARGV[2] -> most jobs to prune, and to list, per call
-- Returns {ids pruned, per expired lease 7 values (flat): id, token, attempts, max_retries
-- ('' for the default), cancel ('1' if requested, else ''), spec, worker}.
local pruned, expired = {}, {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', DONE, '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])) do
  local key = JOB .. id
  remove(id, key, redis.call('HGET', key, 'state'))
  pruned[#pruned + 1] = id
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])) do
  local token, attempts, retries, cancel, spec, worker = unpack(redis.call('HMGET', JOB .. id,
    'token', 'attempts', 'retries', 'cancel', 'spec', 'worker'))
  local n = #expired
  expired[n + 1], expired[n + 2], expired[n + 3] = id, token, attempts
  expired[n + 4], expired[n + 5] = retries or '', cancel or ''
  expired[n + 6], expired[n + 7] = spec or '{}', worker or ''
end
local stale = {}
for _, field in ipairs(redis.call('HKEYS', STATS)) do
  if string.sub(field, 1, 4) == 'fin:'
      and tonumber(string.sub(field, 5)) <= tonumber(ARGV[1]) - THROUGHPUT_WINDOW then
    stale[#stale + 1] = field
  end
end
if #stale > 0 then redis.call('HDEL', STATS, unpack(stale)) end
return {pruned, expired}
