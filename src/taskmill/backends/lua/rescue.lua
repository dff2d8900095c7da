-- Rescue running jobs whose lease expired (listed by maintain.lua) as the caller decided
-- (base.rescue()): the attempt gets the error given, and the job the state given, retrying
-- at the run_at given, dead or cancelled. A job renewed or finished since it was listed is
-- left alone.
-- KEYS: the queue's keys, KEYS[1..10] as laid out by redis_scripts.QueueKeys.
-- ARGV[1]   -> now (as given to maintain.lua)
-- ARGV[2..] -> per job, 5 values: id, token, state (retrying, dead or cancelled), run_at
--              ('' unless retrying), error (JSON)
-- Returns how many jobs were rescued.
local now = tonumber(ARGV[1])
local rescued, placed = 0, 0
for i = 2, #ARGV, 5 do
  local id, state, run_at = ARGV[i], ARGV[i + 2], ARGV[i + 3]
  local key = JOB .. id
  local current, token, lease, cancel =
    unpack(redis.call('HMGET', key, 'state', 'token', 'lease', 'cancel'))
  if current == 'running' and token == ARGV[i + 1] and (tonumber(lease) or 0) < now then
    rescued = rescued + 1
    redis.call('ZREM', LEASES, id)
    redis.call('HDEL', key, 'token', 'lease')
    append_error(key, ARGV[i + 4])
    -- A cancel requested after maintain.lua listed the job reaches the caller's decision
    -- too late: it is read here again, in the same step as the change, so the job does
    -- not run again once its user asked it to stop.
    if cancel == '1' then state = 'cancelled' end
    move(key, 'running', state)
    if state == 'retrying' then
      redis.call('HSET', key, 'run_at', run_at)
      local expires = redis.call('HGET', key, 'expires')
      if expires then redis.call('ZADD', EXPIRING, expires, id) end
      placed = placed + place(id, key, run_at, now)
    else
      finished(id, key, state, now)
    end
  end
end
wake(placed)
return rescued
