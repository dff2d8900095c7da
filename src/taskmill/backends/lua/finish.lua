-- Record how attempts ended; each applies only if its job is still running with its token.
-- Then keep the queue's finished history within bounds: past `keep` succeeded, cancelled
-- and expired jobs, the oldest are pruned (up to twice as many as this call finished, so
-- the history shrinks back under sustained load), whatever their result_ttl.
-- KEYS: the queue's keys, KEYS[1..10] as laid out by redis_scripts.QueueKeys; on a single server also
--   KEYS[11] -> taskmill:{@}:ids  hash: job id -> queue; pruned ids leave it here (on a
--               cluster the caller removes them, in their own slot)
-- ARGV[1]   -> now
-- ARGV[2]   -> keep: the most succeeded/cancelled/expired jobs the queue keeps
-- ARGV[3..] -> per outcome, 7 values: id, token, state (succeeded, retrying, dead,
--              cancelled, or pending: handed back), result, error (JSON), run_at, progress;
--              '' where absent
-- Returns {applied, pruned}: per outcome 1 if applied, else 0; the ids pruned that are
-- still in the ids hash (none on a single server).
local now, keep, IDS = tonumber(ARGV[1]), tonumber(ARGV[2]), KEYS[11]
local out, placed, released, done, arrived = {}, 0, {}, {}, {}
for i = 3, #ARGV, 7 do
  local id, state, result, err, run_at, progress =
    ARGV[i], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local key = JOB .. id
  local current, token, ttl = unpack(redis.call('HMGET', key, 'state', 'token', 'ttl'))
  if current ~= 'running' or token ~= ARGV[i + 1] then
    out[#out + 1] = 0
  else
    out[#out + 1] = 1
    released[#released + 1] = id
    redis.call('HDEL', key, 'token', 'lease')
    if progress ~= '' then redis.call('HSET', key, 'progress', progress) end
    if err ~= '' then append_error(key, err) end
    if state == 'pending' then
      redis.call('HINCRBY', key, 'attempts', '-1')
      if redis.call('HGET', key, 'cancel') == '1' then
        state = 'cancelled'
      else
        local at, created = unpack(redis.call('HMGET', key, 'run_at', 'created'))
        run_at = at or created
        if tonumber(run_at) > now then state = 'scheduled' end
      end
    end
    arrived[state] = (arrived[state] or 0) + 1
    if state == 'succeeded' or state == 'cancelled' then
      if result ~= '' then
        redis.call('HSET', key, 'state', state, 'finished', ARGV[1], 'result', result)
      else
        redis.call('HSET', key, 'state', state, 'finished', ARGV[1])
      end
      push(done, num(now + (tonumber(ttl) or DEFAULT_TTL)), id)
    elseif state == 'dead' then
      redis.call('HSET', key, 'state', state, 'finished', ARGV[1])
      redis.call('ZADD', DEAD, redis.call('ZSCORE', ALL, id), id)
    else
      if state == 'retrying' then
        if run_at == '' then run_at = ARGV[1] end
        redis.call('HSET', key, 'state', state, 'run_at', run_at)
      else
        redis.call('HSET', key, 'state', state)
      end
      local expires = redis.call('HGET', key, 'expires')
      if expires then redis.call('ZADD', EXPIRING, expires, id) end
      placed = placed + place(id, key, run_at, now)
    end
  end
end

if #released > 0 then
  chunked('ZREM', LEASES, released)
  redis.call('HINCRBY', STATS, 'running', int(-#released))
  for state, n in pairs(arrived) do redis.call('HINCRBY', STATS, state, int(n)) end
  -- The queue's throughput counts the jobs that ended succeeded or dead (see finished()).
  local ended = (arrived.succeeded or 0) + (arrived.dead or 0)
  if ended > 0 then redis.call('HINCRBY', STATS, 'fin:' .. math.floor(now), int(ended)) end
end
chunked('ZADD', DONE, done)

local pruned = {}
local over = math.min(redis.call('ZCARD', DONE) - keep, #done)
if over > 0 then
  local left = {}
  pruned = redis.call('ZRANGE', DONE, 0, over - 1)
  local keys = {}
  for k, id in ipairs(pruned) do
    keys[k] = JOB .. id
    local state = redis.call('HGET', keys[k], 'state')
    left[state] = (left[state] or 0) + 1
  end
  chunked('ZREM', DONE, pruned)
  chunked('ZREM', ALL, pruned)
  for first = 1, #keys, 2000 do
    redis.call('DEL', unpack(keys, first, math.min(first + 1999, #keys)))
  end
  for state, n in pairs(left) do redis.call('HINCRBY', STATS, state, -n) end
  if IDS then
    chunked('HDEL', IDS, pruned)
    pruned = {}
  end
end
wake(placed)
return {out, pruned}
