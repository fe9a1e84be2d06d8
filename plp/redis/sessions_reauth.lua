-- Renew a session's sign-in time (reauth). Returns 0 if the session is gone: a plain HSET
-- would recreate it as a hash without TTL.
-- ARGV: prefix, origin, channel, key, now
local s = ARGV[1] .. 's:' .. ARGV[4]
if redis.call('EXISTS', s) == 0 then return 0 end
redis.call('HSET', s, 'a', ARGV[5])
return 1
