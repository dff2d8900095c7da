-- Delete finished jobs of one state.
-- KEYS: the queue's keys, KEYS[1..10] as laid out by redis_scripts.QueueKeys.
-- ARGV[1] -> state: dead, succeeded, cancelled or expired
-- ARGV[2] -> task name to match ('' for any)
-- Returns the ids deleted.
local state, task = ARGV[1], ARGV[2]
local index = DONE
if state == 'dead' then index = DEAD end
local deleted = {}
for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  local key = JOB .. id
  local current, name = unpack(redis.call('HMGET', key, 'state', 'task'))
  if current == state and (task == '' or name == task) then
    remove(id, key, state)
    deleted[#deleted + 1] = id
  end
end
return deleted
