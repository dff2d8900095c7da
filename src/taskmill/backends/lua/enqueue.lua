-- Store new jobs of one queue; a job whose id exists is left as it is.
-- KEYS: the queue's keys, KEYS[1..10] as laid out by redis_scripts.QueueKeys; on a single server also
--   KEYS[11] -> taskmill:{@}:ids     hash: job id -> queue
--   KEYS[12] -> taskmill:{@}:queues  set: every queue that was given a job or configured
--   with them this script records the ids itself (on a cluster, register.lua did).
-- ARGV[1]    -> now
-- ARGV[2]    -> the queue's name
-- ARGV[3]    -> how many option sets follow (the jobs of a task mostly share one)
-- ARGV[4..]  -> per option set, 2 values: task, and '' when the set keeps every default
--               (those fields are then left out of the hash: see common.lua), else
--               'priority|max_retries|result_ttl|spec' ('' for a default among them; spec,
--               JSON, comes last as it may hold a '|')
-- then       -> per job, 4 values: id, payload, listing seq, and '' for a job of the first
--               option set due now with no expiry, else 'option set|run_at|expires_at'
--               (1-based set; '' for now and for none)
-- so that the common call, one job of one option set, has ARGV[4] its task, then
-- ARGV[5]    -> its options
-- ARGV[6]    -> its id
-- ARGV[7]    -> its payload
-- ARGV[8]    -> its listing seq
-- ARGV[9]    -> its own values ('' when due now with no expiry)
-- Returns the jobs not stored, as {position (1-based), value} pairs (flat): the existing
-- record (record() in common.lua) if its id is in this queue, else the name of the queue it
-- belongs to.
-- Bulk enqueues run this over thousands of jobs: what jobs share is sent and worked out
-- once per option set, and the loop keeps to locals and counters. Defaults travel as ''
-- packed with their neighbours: every argument costs the server about as much as the HSET
-- of a job.
local call, format, tonumber, match = redis.call, string.format, tonumber, string.match
local now, queue, created = tonumber(ARGV[1]), ARGV[2], ARGV[1]
local IDS, QUEUES = KEYS[11], KEYS[12]

-- The common call on one server: one job, due now, every option the default. Stored here
-- without the general path's tables, which are for batches; an id already recorded goes on
-- to that path (HSETNX again answers 0).
if IDS and #ARGV == 9 and ARGV[5] == '' and ARGV[9] == '' then
  local id = ARGV[6]
  if call('HSETNX', IDS, id, queue) == 1 then
    local seq = call('HINCRBY', STATS, 'seq', '1')
    if seq == 1 then call('SADD', QUEUES, queue) end
    call('HSET', JOB .. id, 'task', ARGV[4], 'payload', ARGV[7], 'created', created,
      'state', 'pending')
    call('ZADD', READY, rank_of(DEFAULT_PRIORITY, seq), id)
    call('ZADD', ALL, ARGV[8], id)
    call('HINCRBY', STATS, 'pending', '1')
    wake(1)
    return {}
  end
end

local sets = tonumber(ARGV[3])
local FIRST, STEP = 4 + sets * 2, 4
local count = (#ARGV - FIRST + 1) / STEP
-- Ids looked up per HMGET (Lua's unpack takes a few thousand values).
local CHUNK = 1000

-- Per option set: the task; the fields that are not defaults, as HSET arguments (none for
-- most); the base of a ready job's rank (see rank_of in common.lua).
local NONE = {}
local task, extra, base = {}, {}, {}
for s = 1, sets do
  local o = 2 + s * 2
  local priority = DEFAULT_PRIORITY
  task[s] = ARGV[o]
  if ARGV[o + 1] == '' then
    extra[s] = NONE
  else
    local p, retries, ttl, spec = match(ARGV[o + 1], '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
    if p ~= '' then priority = p end
    -- All four, not only those that differ: one table per option set, not per job.
    extra[s] = {'priority', priority, 'retries', retries == '' and DEFAULT_RETRIES or retries,
      'spec', spec == '' and '{}' or spec, 'ttl', ttl == '' and DEFAULT_TTL or ttl}
  end
  base[s] = (PRIORITY_MAX - tonumber(priority)) * SEQ_BITS
end

local owners = {}
-- One job, the common call: its id is recorded as it is looked up (HSETNX), one call less.
local single = IDS and count == 1
if single then
  local id = ARGV[FIRST]
  if call('HSETNX', IDS, id, queue) == 0 then owners[1] = call('HGET', IDS, id) end
elseif IDS then
  for first = 1, count, CHUNK do
    local ids = {}
    for j = first, math.min(first + CHUNK - 1, count) do ids[j - first + 1] = ARGV[FIRST + (j - 1) * STEP] end
    for k, owner in ipairs(call('HMGET', IDS, unpack(ids))) do owners[first + k - 1] = owner end
  end
end

local out, nout, seen = {}, 0, {}
-- ZADD and HSET arguments, each list with its length.
local ready, scheduled, all, expiring, registered = {}, {}, {}, {}, {}
local nready, nscheduled, nall, nexpiring, nregistered = 0, 0, 0, 0, 0
local seq = tonumber(call('HINCRBY', STATS, 'seq', int(count))) - count
-- A queue's first jobs record its name (no queue is ever removed from the set).
if IDS and seq == 0 then call('SADD', QUEUES, queue) end
local j = 0
for i = FIRST, #ARGV, STEP do
  j = j + 1
  local id = ARGV[i]
  local key = JOB .. id
  local owner = owners[j]
  if owner and owner ~= queue then
    out[nout + 1], out[nout + 2], nout = j, owner, nout + 2
  elseif seen[id] or ((owner or not IDS) and call('EXISTS', key) == 1) then
    out[nout + 1], out[nout + 2], nout = j, record(key, id), nout + 2
  else
    seen[id] = true
    seq = seq + 1
    local lseq, s, run_at, expires = ARGV[i + 2], 1, '', ''
    if ARGV[i + 3] ~= '' then
      s, run_at, expires = match(ARGV[i + 3], '^([^|]*)|([^|]*)|(.*)$')
      s = tonumber(s) or 1
    end
    local state = 'pending'
    if run_at ~= '' and tonumber(run_at) > now then state = 'scheduled' end
    -- The job keeps its rank for good (see rank in common.lua): rank_of's, from the base
    -- worked out once per option set, as a call of rank_of per job slows bulk enqueues.
    local rank = format('%d', base[s] + seq)
    local more = extra[s]
    if run_at ~= '' then  -- a time of its own: a table for this job
      more = {'run_at', run_at, 'rank', rank, unpack(more)}
    end
    -- Most jobs keep every default: fewer fields, less memory per waiting job, a cheaper
    -- HSET (each field scans those before it, and grows the hash by a reallocation). The
    -- id is in the key, the listing seq is the job's score in ALL, run_at, when it is the
    -- enqueue time, is `created`, and the rank of a job due now is its score in READY
    -- (claim writes it down when it takes the job); a job due later keeps it until then.
    call('HSET', key, 'task', task[s], 'payload', ARGV[i + 1], 'created', created,
      'state', state, unpack(more))
    if expires ~= '' then
      call('HSET', key, 'expires', expires)
      expiring[nexpiring + 1], expiring[nexpiring + 2], nexpiring = expires, id, nexpiring + 2
    end
    if state == 'pending' then
      ready[nready + 1], ready[nready + 2], nready = rank, id, nready + 2
    else
      scheduled[nscheduled + 1], scheduled[nscheduled + 2] = run_at, id
      nscheduled = nscheduled + 2
    end
    all[nall + 1], all[nall + 2], nall = lseq, id, nall + 2
    if not owner and not single then
      registered[nregistered + 1], registered[nregistered + 2] = id, queue
      nregistered = nregistered + 2
    end
  end
end

chunked('ZADD', READY, ready)
chunked('ZADD', SCHEDULED, scheduled)
chunked('ZADD', EXPIRING, expiring)
chunked('ZADD', ALL, all)
if IDS then chunked('HSET', IDS, registered) end
if nready > 0 then call('HINCRBY', STATS, 'pending', int(nready / 2)) end
if nscheduled > 0 then call('HINCRBY', STATS, 'scheduled', int(nscheduled / 2)) end
wake((nready + nscheduled) / 2)
return out
