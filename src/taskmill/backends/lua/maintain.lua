-- Upkeep of one queue: delete finished jobs past their result_ttl (not dead ones) and
-- throughput counters older than THROUGHPUT_WINDOW, and list the running jobs whose lease
-- expired, for the caller to rescue with rescue.lua (their retry backoff is computed by the
-- caller's retry policy).
-- KEYS: the queue's keys, KEYS[1..10] as listed in common.lua.
-- ARGV[1] -> now
-- ARGV[2] -> most jobs to prune, and to list, per call
-- Returns {ids pruned, {id, token, attempts, spec, worker} per expired lease (flat)}.
local pruned, expired = {}, {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', DONE, '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])) do
  local key = PREFIX .. id
  remove(id, key, redis.call('HGET', key, 'state'))
  pruned[#pruned + 1] = id
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])) do
  local token, attempts, spec, worker =
    unpack(redis.call('HMGET', PREFIX .. id, 'token', 'attempts', 'spec', 'worker'))
  expired[#expired + 1] = id
  expired[#expired + 1] = token
  expired[#expired + 1] = attempts
  expired[#expired + 1] = spec or '{}'
  expired[#expired + 1] = worker or ''
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
