-- Take up to `limit` due jobs of one queue for a worker: expire waiting jobs past their
-- expires_at, promote scheduled jobs now due, then take the best ready ones.
-- KEYS: the queue's keys, KEYS[1..10] as laid out by redis_scripts.QueueKeys, then
--   KEYS[11] -> taskmill:{q}:claim:<worker id>  string: nonce .. JSON [ids] of the worker's
--               last claim of this queue that took jobs, kept a minute, so that the
--               client's retry of a call whose reply was lost (a dropped connection) gets
--               the same jobs instead of leaving them running unseen. A worker claims a
--               queue one call at a time: its next claim had the reply, and overwrites it.
-- ARGV[1] -> now
-- ARGV[2] -> limit
-- ARGV[3] -> worker id
-- ARGV[4] -> lease (seconds)
-- ARGV[5] -> nonce: random per call; the token of the i-th job taken is nonce .. ':' .. i
-- ARGV[6] -> optional: the caller's clock minus the server's. Given when the call was
--            queued behind a blocking wait, so ARGV[1] may be stale by the time it runs:
--            now is then the server's clock in the caller's terms (never before ARGV[1]).
-- Returns {fresh, records, now, lost}: the records taken (record() each), in order; fresh = 1
-- when they were read before this claim changed them (the caller applies the claim: state
-- running, attempts + 1, token, worker, started = now, lease = now + lease), 0 when a retry
-- replays an earlier call; lost: the ids of index entries dropped because their job's hash
-- is gone (the caller logs them). A record the caller cannot read it quarantines
-- (quarantine.lua), by its token.
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
if ARGV[6] then
  local time = redis.call('TIME')
  now = math.max(now, tonumber(time[1]) + tonumber(time[2]) / 1e6 + tonumber(ARGV[6]))
end
-- The caller's time as it sent it, unless it was moved: num() costs a sprintf.
local stamp = ARGV[6] and num(now) or ARGV[1]
local lease_until = num(now + tonumber(ARGV[4]))
local TAKEN = KEYS[11]

-- The record is the nonce, then the ids as JSON: only a replay decodes them.
local last = redis.call('GET', TAKEN)
if last and string.find(last, ARGV[5], 1, true) == 1 then
  local out = {}
  for i, id in ipairs(cjson.decode(string.sub(last, #ARGV[5] + 1))) do
    local key = JOB .. id
    if redis.call('HGET', key, 'token') == ARGV[5] .. ':' .. i then
      out[#out + 1] = record(key, id)
    end
  end
  return {0, out, stamp, {}}
end
-- Bounded, so that one call never holds the server long; the rest goes next time.
local BATCH = 1000
local lost = {}

-- Expired and delayed jobs are looked for where there are any (an empty zset is no key):
-- most claims find neither, and one EXISTS costs less than two ranges that find nothing.
if redis.call('EXISTS', EXPIRING, SCHEDULED) > 0 then
  local BATCH_ARGS = {'-inf', stamp, 'LIMIT', '0', int(BATCH)}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', EXPIRING, unpack(BATCH_ARGS))) do
    local key = JOB .. id
    local state = redis.call('HGET', key, 'state')
    redis.call('ZREM', EXPIRING, id)
    if not state and redis.call('EXISTS', key) == 0 then
      lost[#lost + 1] = id
    elseif WAITING[state] then
      unplace(id)
      move(key, state, 'expired')
      finished(id, key, 'expired', now)
    end
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', SCHEDULED, unpack(BATCH_ARGS))) do
    redis.call('ZREM', SCHEDULED, id)
    local at = rank(JOB .. id)
    if at then
      redis.call('ZADD', READY, at, id)
    elseif redis.call('EXISTS', JOB .. id) == 0 then
      lost[#lost + 1] = id
    else  -- a record without its rank: taken next, and quarantined if it cannot be read
      redis.call('ZADD', READY, '0', id)
    end
  end
end

-- One read for the gates: paused, and the queue's concurrency limit (its own field, kept
-- by configure_queue, so that no JSON is decoded here) against its running jobs.
local gates = redis.call('HMGET', STATS, 'paused', 'concurrency', 'running')
if gates[2] then
  limit = math.min(limit, tonumber(gates[2]) - (tonumber(gates[3]) or 0))
end
if gates[1] == '1' or limit <= 0 then
  return {1, {}, stamp, lost}
end

local out, ids, leases, expiring, from = {}, {}, {}, {}, {}
local popped = redis.call('ZPOPMIN', READY, int(math.min(limit, BATCH)))
for i = 1, #popped, 2 do
  local id = popped[i]
  local key = JOB .. id
  local fields = record(key, id)
  if #fields == 0 then
    lost[#lost + 1] = id
  else
    local state, attempts, expires, cancel
    for f = 1, #fields, 2 do
      local name = fields[f]
      if name == 'state' then state = fields[f + 1]
      elseif name == 'attempts' then attempts = fields[f + 1]
      elseif name == 'expires' then expires = true
      elseif name == 'cancel' then cancel = true end
    end
    if state then from[state] = (from[state] or 0) + 1 end
    if expires then expiring[#expiring + 1] = id end
    -- The rank too: a job due when stored has it only as its score in READY, and a retry or
    -- a hand-back puts the job back in its place.
    redis.call('HSET', key, 'state', 'running', 'attempts', int((tonumber(attempts) or 0) + 1),
      'token', ARGV[5] .. ':' .. int(#out + 1), 'worker', ARGV[3], 'started', stamp,
      'lease', lease_until, 'rank', popped[i + 1])
    -- A request to cancel was for an earlier attempt (the field is there only once one was made).
    if cancel then redis.call('HDEL', key, 'cancel') end
    ids[#ids + 1] = id
    push(leases, lease_until, id)
    out[#out + 1] = fields
  end
end
if #ids > 0 then
  redis.call('ZADD', LEASES, unpack(leases))
  if #expiring > 0 then redis.call('ZREM', EXPIRING, unpack(expiring)) end
  redis.call('SET', TAKEN, ARGV[5] .. cjson.encode(ids), 'EX', '60')
  for state, n in pairs(from) do redis.call('HINCRBY', STATS, state, int(-n)) end
  redis.call('HINCRBY', STATS, 'running', int(#ids))
end
return {1, out, stamp, lost}
