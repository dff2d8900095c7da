-- Record which queue each new job id belongs to, before its queue's enqueue.lua runs, so
-- that get, cancel and delete by id find it; an id already recorded keeps its queue.
-- KEYS[1] -> taskmill:{@}:ids     hash: job id -> queue
-- KEYS[2] -> taskmill:{@}:queues  set: every queue that was given a job or configured
-- ARGV[1..] -> per job, 2 values: id, queue
-- Returns, per job, the queue its id belongs to.
local owners = {}
for i = 1, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('SADD', KEYS[2], ARGV[i + 1])
    owners[#owners + 1] = ARGV[i + 1]
  else
    owners[#owners + 1] = redis.call('HGET', KEYS[1], ARGV[i])
  end
end
return owners
