-- Take or renew a lease (acquire_lease): when nobody holds it, it has expired, or the
-- caller holds it already. Times come from the caller's clock, like every script's.
-- KEYS[1] -> taskmill:{@}:lease:<name>  hash: holder, expires
-- ARGV[1] -> now
-- ARGV[2] -> holder
-- ARGV[3] -> expires_at if taken (now + ttl)
-- Returns {holder, expires_at} as they are afterwards.
local holder, expires = unpack(redis.call('HMGET', KEYS[1], 'holder', 'expires'))
if not holder or tonumber(expires) <= tonumber(ARGV[1]) or holder == ARGV[2] then
  redis.call('HSET', KEYS[1], 'holder', ARGV[2], 'expires', ARGV[3])
  return {ARGV[2], ARGV[3]}
end
return {holder, expires}
