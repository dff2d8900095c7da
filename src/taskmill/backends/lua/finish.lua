-- Record how attempts ended; each applies only if its job is still running with its token.
-- KEYS: the queue's keys, KEYS[1..10] as listed in common.lua.
-- ARGV[1]   -> now
-- ARGV[2..] -> per outcome, 7 values: id, token, state (succeeded, retrying, dead,
--              cancelled, or pending: handed back), result, error (JSON), run_at, progress;
--              '' where absent
-- Returns, per outcome, 1 if applied, else 0.
local now = tonumber(ARGV[1])
local out, placed = {}, 0
for i = 2, #ARGV, 7 do
  local id, state, result, err, run_at, progress =
    ARGV[i], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local key = PREFIX .. id
  local current, token = unpack(redis.call('HMGET', key, 'state', 'token'))
  if current ~= 'running' or token ~= ARGV[i + 1] then
    out[#out + 1] = 0
  else
    out[#out + 1] = 1
    redis.call('ZREM', LEASES, id)
    redis.call('HDEL', key, 'token', 'lease')
    if progress ~= '' then redis.call('HSET', key, 'progress', progress) end
    if err ~= '' then append_error(key, err) end
    if state == 'pending' then
      redis.call('HINCRBY', key, 'attempts', -1)
      if redis.call('HGET', key, 'cancel') == '1' then
        state = 'cancelled'
      else
        run_at = redis.call('HGET', key, 'run_at')
        if tonumber(run_at) > now then state = 'scheduled' end
      end
    end
    move(key, 'running', state)
    if state == 'succeeded' and result ~= '' then
      redis.call('HSET', key, 'result', result)
    end
    if state == 'succeeded' or state == 'dead' or state == 'cancelled' then
      finished(id, key, state, now)
    else
      if state == 'retrying' then
        if run_at == '' then run_at = ARGV[1] end
        redis.call('HSET', key, 'run_at', run_at)
      end
      local expires = redis.call('HGET', key, 'expires')
      if expires then redis.call('ZADD', EXPIRING, expires, id) end
      placed = placed + place(id, key, run_at, now)
    end
  end
end
wake(placed)
return out
