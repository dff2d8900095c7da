-- Record the job enqueued for a schedule's tick (record_tick): only a tick later than the
-- last one recorded moves the schedule on, so last_tick never goes back.
-- KEYS[1] -> taskmill:{@}:schedules             hash: name -> definition (JSON)
-- KEYS[2] -> taskmill:{@}:schedule-ticks        hash: name -> last tick
-- KEYS[3] -> taskmill:{@}:schedule-jobs:<name>  list: recent job ids, newest first
-- ARGV[1] -> name
-- ARGV[2] -> tick (UNIX seconds)
-- ARGV[3] -> job id
-- ARGV[4] -> how many job ids to keep
-- Returns 1 if recorded, 0 if the schedule is gone or has a tick as late.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local last = redis.call('HGET', KEYS[2], ARGV[1])
if last and tonumber(last) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('LREM', KEYS[3], 0, ARGV[3])
redis.call('LPUSH', KEYS[3], ARGV[3])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
return 1
