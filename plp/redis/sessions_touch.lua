-- Record activity: move the session's deadline. Returns 0 if the session is gone.
-- ARGV: prefix, origin, channel, key, uid, now, ttl_ms, deadline
local s = ARGV[1] .. 's:' .. ARGV[4]
if redis.call('EXISTS', s) == 0 then return 0 end
redis.call('HSET', s, 'l', ARGV[6])
redis.call('PEXPIRE', s, ARGV[7])
redis.call('ZADD', ARGV[1] .. 'exp', 'XX', ARGV[8], ARGV[5] .. ':' .. ARGV[4])
return 1
