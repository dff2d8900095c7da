-- Quarantine jobs whose records the caller could not read (rules.Quarantine): each one
-- still held on the token given (by the claim that took it, or the expired lease upkeep
-- listed) becomes dead with the errors given, its spec replaced if one is given, and any
-- field a Job cannot do without filled in, so that it reads back and lists; marked
-- corrupt, requeue leaves it dead.
-- KEYS: the queue's keys, KEYS[1..10] as laid out by redis_scripts.QueueKeys.
-- ARGV[1]   -> now
-- ARGV[2..] -> per job, 4 values: id, token, errors (the whole JSON list), spec ('' keeps it)
-- Returns how many jobs were quarantined.
local now = tonumber(ARGV[1])
local done = 0
for i = 2, #ARGV, 4 do
  local id, spec = ARGV[i], ARGV[i + 3]
  local key = JOB .. id
  local state, token = unpack(redis.call('HMGET', key, 'state', 'token'))
  if token == ARGV[i + 1] then
    done = done + 1
    redis.call('ZREM', LEASES, id)
    redis.call('HDEL', key, 'token', 'lease')
    redis.call('HSET', key, 'state', 'dead', 'errors', ARGV[i + 2], 'corrupt', '1',
      'finished', ARGV[1])
    if spec ~= '' then redis.call('HSET', key, 'spec', spec) end
    redis.call('HSETNX', key, 'task', '')
    redis.call('HSETNX', key, 'payload', '')
    redis.call('HSETNX', key, 'created', ARGV[1])
    if state then redis.call('HINCRBY', STATS, state, '-1') end
    redis.call('HINCRBY', STATS, 'dead', '1')
    redis.call('HINCRBY', STATS, 'fin:' .. math.floor(now), '1')
    -- A record whose listing entry is gone too gets one: the dead-letter queue lists it.
    local seq = redis.call('ZSCORE', ALL, id)
    if not seq then
      seq = string.format('%d', now * 1000000)
      redis.call('ZADD', ALL, seq, id)
    end
    redis.call('ZADD', DEAD, seq, id)
  end
end
return done
