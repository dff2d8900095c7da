-- Remove a job that is not running.
-- KEYS: the queue's keys, KEYS[1..10] as laid out by redis_scripts.QueueKeys.
-- ARGV[1] -> job id
-- Returns 1 if removed, else 0.
local id = ARGV[1]
local key = JOB .. id
local state = redis.call('HGET', key, 'state')
if not state or state == 'running' then
  return 0
end
remove(id, key, state)
return 1
