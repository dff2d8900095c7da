-- What an idle worker needs before it blocks on the wake list: is a job of this queue due
-- now, else when the first scheduled one is. When none is due it also empties the wake
-- list: its tokens are stale, and a job stored after this script pushes a fresh one.
-- KEYS: the queue's keys, KEYS[1..10] as laid out by redis_scripts.QueueKeys.
-- ARGV[1] -> now
-- Returns '0' if a job is due (or claim has work to do), the next run_at, or '' for none.
if redis.call('HGET', STATS, 'paused') == '1' then
  redis.call('DEL', WAKE)
  return ''
end
if redis.call('ZCARD', READY) > 0 then return '0' end
local first = redis.call('ZRANGE', SCHEDULED, 0, 0, 'WITHSCORES')
if first[2] and tonumber(first[2]) <= tonumber(ARGV[1]) then return '0' end
redis.call('DEL', WAKE)
return first[2] or ''
