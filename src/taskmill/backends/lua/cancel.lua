-- Cancel a job: a waiting one is cancelled now, a running one gets cancel requested (its
-- worker learns it at its next heartbeat), a finished one is left as it is.
-- KEYS: the queue's keys, KEYS[1..10] as laid out by redis_scripts.QueueKeys.
-- ARGV[1] -> now
-- ARGV[2] -> job id
-- Returns the record afterwards (record() in common.lua).
local now, id = tonumber(ARGV[1]), ARGV[2]
local key = JOB .. id
local state = redis.call('HGET', key, 'state')
if WAITING[state] then
  unplace(id)
  move(key, state, 'cancelled')
  finished(id, key, 'cancelled', now)
elseif state == 'running' then
  redis.call('HSET', key, 'cancel', 1)
end
return record(key, id)
