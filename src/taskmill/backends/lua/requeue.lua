-- Move dead jobs back to pending: attempts 0, run_at now, past errors kept.
-- KEYS: the queue's keys, KEYS[1..10] as laid out by redis_scripts.QueueKeys.
-- ARGV[1]   -> now
-- ARGV[2]   -> task name to match ('' for any)
-- ARGV[3..] -> ids to move (none: every dead job of the queue)
-- Returns how many moved.
local now, task = tonumber(ARGV[1]), ARGV[2]
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then ids = redis.call('ZRANGE', DEAD, 0, -1) end
local moved = 0
for _, id in ipairs(ids) do
  local key = JOB .. id
  local state, name, corrupt = unpack(redis.call('HMGET', key, 'state', 'task', 'corrupt'))
  -- A quarantined record (quarantine.lua) stays dead.
  if state == 'dead' and not corrupt and (task == '' or name == task) then
    moved = moved + 1
    redis.call('ZREM', DEAD, id)
    move(key, 'dead', 'pending')
    redis.call('HSET', key, 'attempts', 0, 'run_at', ARGV[1])
    redis.call('HDEL', key, 'finished')
    local expires = redis.call('HGET', key, 'expires')
    if expires then redis.call('ZADD', EXPIRING, expires, id) end
    place(id, key, ARGV[1], now)
  end
end
wake(moved)
return moved
