-- Store new jobs of one queue; a job whose id exists is left as it is.
-- KEYS: the queue's keys, KEYS[1..10] as listed in common.lua.
-- ARGV[1]    -> now
-- ARGV[2..]  -> per job, 10 values: id, task, payload, priority, max_retries, spec (JSON),
--               result_ttl, run_at, expires_at ('' for none), listing seq
-- Returns, per job, 0 if stored, else the existing record (HGETALL).
local now = tonumber(ARGV[1])
local out, placed = {}, 0
for i = 2, #ARGV, 10 do
  local id, run_at, expires = ARGV[i], ARGV[i + 7], ARGV[i + 8]
  local key = PREFIX .. id
  if redis.call('EXISTS', key) == 1 then
    out[#out + 1] = redis.call('HGETALL', key)
  else
    local state = 'pending'
    if tonumber(run_at) > now then state = 'scheduled' end
    redis.call('HSET', key, 'id', id, 'task', ARGV[i + 1], 'payload', ARGV[i + 2],
      'priority', ARGV[i + 3], 'retries', ARGV[i + 4], 'spec', ARGV[i + 5], 'ttl', ARGV[i + 6],
      'run_at', run_at, 'created', ARGV[1], 'state', state, 'attempts', 0, 'errors', '[]',
      'cancel', 0, 'lseq', ARGV[i + 9], 'seq', redis.call('HINCRBY', STATS, 'seq', 1))
    redis.call('HINCRBY', STATS, state, 1)
    if expires ~= '' then
      redis.call('HSET', key, 'expires', expires)
      redis.call('ZADD', EXPIRING, expires, id)
    end
    redis.call('ZADD', ALL, ARGV[i + 9], id)
    placed = placed + place(id, key, run_at, now)
    out[#out + 1] = 0
  end
end
wake(placed)
return out
