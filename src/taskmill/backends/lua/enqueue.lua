-- Store new jobs of one queue; a job whose id exists is left as it is.
-- KEYS: the queue's keys, KEYS[1..10] as listed in common.lua; on a single server also
--   KEYS[11] -> taskmill:{@}:ids     hash: job id -> queue
--   KEYS[12] -> taskmill:{@}:queues  set: every queue that was given a job or configured
--   with them this script records the ids itself (on a cluster, register.lua did).
-- ARGV[1]    -> now
-- ARGV[2]    -> the queue's name
-- ARGV[3..]  -> per job, 10 values: id, task, payload, priority, max_retries, spec (JSON),
--               result_ttl, run_at, expires_at ('' for none), listing seq
-- Returns, per job: 0 if stored; the existing record (HGETALL) if its id is in this queue;
-- else the name of the queue its id belongs to.
local now, queue = tonumber(ARGV[1]), ARGV[2]
local IDS, QUEUES = KEYS[11], KEYS[12]
local STEP = 10
local count = (#ARGV - 2) / STEP
-- Ids looked up per HMGET (Lua's unpack takes a few thousand values).
local CHUNK = 1000

local owners = {}
if IDS then
  for first = 1, count, CHUNK do
    local ids = {}
    for j = first, math.min(first + CHUNK - 1, count) do ids[#ids + 1] = ARGV[3 + (j - 1) * STEP] end
    for k, owner in ipairs(redis.call('HMGET', IDS, unpack(ids))) do owners[first + k - 1] = owner end
  end
end

local out, seen = {}, {}
local ready, scheduled, all, expiring, registered = {}, {}, {}, {}, {}
local counts = {pending = 0, scheduled = 0}
local seq = tonumber(redis.call('HINCRBY', STATS, 'seq', count)) - count
for j = 1, count do
  local i = 3 + (j - 1) * STEP
  local id, priority, run_at, expires, lseq = ARGV[i], ARGV[i + 3], ARGV[i + 7], ARGV[i + 8], ARGV[i + 9]
  local key = PREFIX .. id
  local owner = owners[j]
  if owner and owner ~= queue then
    out[j] = owner
  elseif seen[id] or ((owner or not IDS) and redis.call('EXISTS', key) == 1) then
    out[j] = redis.call('HGETALL', key)
  else
    seen[id] = true
    seq = seq + 1
    local state = 'pending'
    if tonumber(run_at) > now then state = 'scheduled' end
    counts[state] = counts[state] + 1
    redis.call('HSET', key, 'id', id, 'task', ARGV[i + 1], 'payload', ARGV[i + 2],
      'priority', priority, 'retries', ARGV[i + 4], 'spec', ARGV[i + 5], 'ttl', ARGV[i + 6],
      'run_at', run_at, 'created', ARGV[1], 'state', state, 'lseq', lseq, 'seq', seq)
    if expires ~= '' then
      redis.call('HSET', key, 'expires', expires)
      push(expiring, expires, id)
    end
    if state == 'pending' then
      push(ready, rank_of(priority, seq), id)
    else
      push(scheduled, run_at, id)
    end
    push(all, lseq, id)
    if not owner then push(registered, id, queue) end
    out[j] = 0
  end
end

chunked('ZADD', READY, ready)
chunked('ZADD', SCHEDULED, scheduled)
chunked('ZADD', EXPIRING, expiring)
chunked('ZADD', ALL, all)
if IDS then
  chunked('HSET', IDS, registered)
  if #registered > 0 then redis.call('SADD', QUEUES, queue) end
end
for state, n in pairs(counts) do
  if n > 0 then redis.call('HINCRBY', STATS, state, n) end
end
wake(#ready / 2 + #scheduled / 2)
return out
