-- Give up a lease (release_lease), if the caller holds it.
-- KEYS[1] -> taskmill:{@}:lease:<name>  hash: holder, expires
-- ARGV[1] -> holder
-- Returns 1 if released.
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
