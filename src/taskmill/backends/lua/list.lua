-- One queue's jobs matching the filters, newest first, below a listing seq.
-- KEYS: the queue's keys, KEYS[1..10] as laid out by redis_scripts.QueueKeys.
-- ARGV[1] -> listing seq to start below ('+inf' for the newest)
-- ARGV[2] -> most jobs to return
-- ARGV[3] -> state to match ('' for any)
-- ARGV[4] -> task to match ('' for any)
-- Returns {record (record() in common.lua), listing seq} per job (flat), then the ids of
-- listing entries dropped because their job's hash is gone.
local limit, state, task = tonumber(ARGV[2]), ARGV[3], ARGV[4]
local out, lost, below = {}, {}, ARGV[1]
while #out < 2 * limit do
  local page = redis.call('ZREVRANGEBYSCORE', ALL, '(' .. below, '-inf', 'WITHSCORES', 'LIMIT', 0, 500)
  if #page == 0 then break end
  for i = 1, #page, 2 do
    local key = JOB .. page[i]
    local current, name = unpack(redis.call('HMGET', key, 'state', 'task'))
    if not current and redis.call('EXISTS', key) == 0 then
      redis.call('ZREM', ALL, page[i])
      lost[#lost + 1] = page[i]
    elseif (state == '' or current == state) and (task == '' or name == task) then
      out[#out + 1] = record(key, page[i])
      out[#out + 1] = page[i + 1]
      if #out >= 2 * limit then break end
    end
  end
  below = page[#page]
end
return {out, lost}
