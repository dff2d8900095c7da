-- Renew the leases a worker holds in one queue and store their progress.
-- KEYS: the queue's keys, KEYS[1..10] as laid out by redis_scripts.QueueKeys.
-- ARGV[1]   -> lease_until (now + lease)
-- ARGV[2..] -> per job, 3 values: id, token, progress ('' for none)
-- Returns the ids the worker must stop: cancellation requested, or no longer held.
local stop = {}
for i = 2, #ARGV, 3 do
  local id = ARGV[i]
  local key = JOB .. id
  local state, token, cancel = unpack(redis.call('HMGET', key, 'state', 'token', 'cancel'))
  if state ~= 'running' or token ~= ARGV[i + 1] then
    stop[#stop + 1] = id
  else
    redis.call('HSET', key, 'lease', ARGV[1])
    redis.call('ZADD', LEASES, ARGV[1], id)
    if ARGV[i + 2] ~= '' then redis.call('HSET', key, 'progress', ARGV[i + 2]) end
    if cancel == '1' then stop[#stop + 1] = id end
  end
end
return stop
