-- Rescue running jobs whose lease expired (listed by maintain.lua): the attempt gets the
-- error given; the job becomes cancelled if that was requested, dead past max_retries,
-- else retrying at the run_at given. A job renewed or finished meanwhile is left alone.
-- KEYS: the queue's keys, KEYS[1..10] as listed in common.lua.
-- ARGV[1]   -> now
-- ARGV[2..] -> per job, 4 values: id, token, run_at if retried, error (JSON)
-- Returns how many jobs were rescued.
local now = tonumber(ARGV[1])
local rescued, placed = 0, 0
for i = 2, #ARGV, 4 do
  local id = ARGV[i]
  local key = PREFIX .. id
  local state, token, lease, attempts, retries, cancel = unpack(redis.call('HMGET', key,
    'state', 'token', 'lease', 'attempts', 'retries', 'cancel'))
  if state == 'running' and token == ARGV[i + 1] and tonumber(lease) < now then
    rescued = rescued + 1
    redis.call('ZREM', LEASES, id)
    redis.call('HDEL', key, 'token', 'lease')
    append_error(key, ARGV[i + 3])
    if cancel == '1' or tonumber(attempts) > (tonumber(retries) or DEFAULT_RETRIES) then
      state = 'dead'
      if cancel == '1' then state = 'cancelled' end
      move(key, 'running', state)
      finished(id, key, state, now)
    else
      move(key, 'running', 'retrying')
      redis.call('HSET', key, 'run_at', ARGV[i + 2])
      local expires = redis.call('HGET', key, 'expires')
      if expires then redis.call('ZADD', EXPIRING, expires, id) end
      placed = placed + place(id, key, ARGV[i + 2], now)
    end
  end
end
wake(placed)
return rescued
