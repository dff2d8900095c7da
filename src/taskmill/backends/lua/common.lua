-- Helpers shared by the scripts (run once, as the head of the library the scripts are
-- functions of: see redis_scripts.py). The per-queue ones (enqueue, claim, finish, ...) take
-- the same KEYS, the keys of one queue, sharing its {q} hash tag (one cluster slot): their
-- layout is redis_scripts.QueueKeys, which the library's first lines bind to JOB, READY,
-- SCHEDULED, LEASES, EXPIRING, DONE, DEAD, ALL, STATS and WAKE (each function binds the keys
-- of its call first; Redis runs one call at a time). Those lines also define WAKE_CAP,
-- PRIORITY_MAX, THROUGHPUT_WINDOW (base.py's) and the job model's defaults, DEFAULT_PRIORITY,
-- DEFAULT_RETRIES and DEFAULT_TTL (job.py's): enqueue leaves a job's priority, retries, spec
-- and ttl fields out when they hold these, so a missing field means its default.
-- Times come from the caller's clock as ARGV strings and are stored as given, or through
-- num(): Lua prints numbers with 14 digits, which would round them.
-- A rank leaves 40 bits to the per-queue seq below each priority.
local SEQ_BITS = 2 ^ 40
local WAITING = {pending = true, scheduled = true, retrying = true}

-- A number as a string Redis stores exactly (tostring would keep 14 digits).
local function num(x)
  return string.format('%.17g', x)
end

-- An integer as a command's argument. Lua writes a number out with sprintf, which costs
-- more than most commands; the counts, positions and attempts the scripts pass are small,
-- so their strings are made once, as the library loads.
local INTS = {}
for i = -64, 64 do INTS[i] = '' .. i end
local function int(n)
  return INTS[n] or n
end

-- Highest priority first, then enqueue order: a job keeps its rank (see rank below), so a
-- retried or handed back job keeps its place among the jobs of its priority. %d: exact for
-- any rank (below 2^53), and cheaper than num()'s %.17g.
local function rank_of(priority, seq)
  return string.format('%d', (PRIORITY_MAX - tonumber(priority)) * SEQ_BITS + tonumber(seq))
end

-- A job's rank, as enqueue stored it for a job due later, or claim for a job it took (a
-- job due when stored has its rank only as its score in READY until then).
local function rank(key)
  return redis.call('HGET', key, 'rank')
end

-- A job's record as HGETALL gives it, plus its id, which the hash leaves out (the key has
-- it); empty if there is no such job. A field left out holds its default (see enqueue.lua).
local function record(key, id)
  local fields = redis.call('HGETALL', key)
  if #fields > 0 then
    fields[#fields + 1] = 'id'
    fields[#fields + 1] = id
  end
  return fields
end

-- Run `command key ...` over a long list of arguments, a chunk at a time: Lua's unpack takes
-- a few thousand values. The chunk is even, so score/member pairs stay whole.
local function chunked(command, key, args)
  for first = 1, #args, 2000 do
    redis.call(command, key, unpack(args, first, math.min(first + 1999, #args)))
  end
end

-- Append a score and a member to a list of ZADD arguments.
local function push(list, score, member)
  list[#list + 1] = score
  list[#list + 1] = member
end

local function move(key, from, to)
  redis.call('HSET', key, 'state', to)
  redis.call('HINCRBY', STATS, from, '-1')
  redis.call('HINCRBY', STATS, to, '1')
end

-- Push up to `count` wake-up tokens, keeping at most WAKE_CAP waiting: one call unless the
-- list overflows (an idle worker is there to pop it, mostly).
local function wake(count)
  if count <= 0 then return end
  local waiting
  if count == 1 then  -- the common case, with no table to build
    waiting = redis.call('LPUSH', WAKE, '1')
  else
    local tokens = {}
    for i = 1, math.min(count, WAKE_CAP) do tokens[i] = '1' end
    waiting = redis.call('LPUSH', WAKE, unpack(tokens))
  end
  if waiting > WAKE_CAP then redis.call('LTRIM', WAKE, 0, WAKE_CAP - 1) end
end

-- Put a waiting job where claim looks: ready if due, else scheduled. Returns 1: a job was
-- placed, to wake a worker for (a scheduled one may be due before the waiters look again).
local function place(id, key, run_at, now)
  if tonumber(run_at) <= now then
    redis.call('ZADD', READY, rank(key), id)
  else
    redis.call('ZADD', SCHEDULED, run_at, id)
  end
  return 1
end

local function unplace(id)
  redis.call('ZREM', READY, id)
  redis.call('ZREM', SCHEDULED, id)
  redis.call('ZREM', EXPIRING, id)
end

-- A job reached a finished state: dead jobs are kept, the others pruned after result_ttl.
-- Those that succeeded or died count towards the queue's throughput.
local function finished(id, key, state, now)
  redis.call('HSET', key, 'finished', num(now))
  if state == 'succeeded' or state == 'dead' then
    redis.call('HINCRBY', STATS, 'fin:' .. math.floor(now), '1')
  end
  if state == 'dead' then
    redis.call('ZADD', DEAD, redis.call('ZSCORE', ALL, id), id)
  else
    local ttl = tonumber(redis.call('HGET', key, 'ttl')) or DEFAULT_TTL
    redis.call('ZADD', DONE, num(now + ttl), id)
  end
end

local function append_error(key, err)
  local errors = redis.call('HGET', key, 'errors')
  if not errors then
    errors = '[' .. err .. ']'
  else
    errors = string.sub(errors, 1, -2) .. ',' .. err .. ']'
  end
  redis.call('HSET', key, 'errors', errors)
end

local function remove(id, key, state)
  unplace(id)
  redis.call('ZREM', LEASES, id)
  redis.call('ZREM', DONE, id)
  redis.call('ZREM', DEAD, id)
  redis.call('ZREM', ALL, id)
  -- No state: the hash is gone (or broken), and was counted nowhere.
  if state then redis.call('HINCRBY', STATS, state, -1) end
  redis.call('DEL', key)
end

