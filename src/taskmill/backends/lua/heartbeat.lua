-- Renew the leases a worker holds in one queue and store their progress.
-- KEYS: the queue's keys, KEYS[1..10] as listed in common.lua.
-- ARGV[1]   -> now (unused, kept first like in every script)
-- ARGV[2]   -> lease_until (now + lease)
-- ARGV[3..] -> per job, 3 values: id, token, progress ('' for none)
-- Returns the ids the worker must stop: cancellation requested, or no longer held.
local stop = {}
for i = 3, #ARGV, 3 do
  local id = ARGV[i]
  local key = PREFIX .. id
  local state, token, cancel = unpack(redis.call('HMGET', key, 'state', 'token', 'cancel'))
  if state ~= 'running' or token ~= ARGV[i + 1] then
    stop[#stop + 1] = id
  else
    redis.call('HSET', key, 'lease', ARGV[2])
    redis.call('ZADD', LEASES, ARGV[2], id)
    if ARGV[i + 2] ~= '' then redis.call('HSET', key, 'progress', ARGV[i + 2]) end
    if cancel == '1' then stop[#stop + 1] = id end
  end
end
return stop
