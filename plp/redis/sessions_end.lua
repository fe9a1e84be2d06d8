-- End one session by key.
-- ARGV: prefix, origin, channel, key, reason
local uid = redis.call('HGET', p .. 's:' .. ARGV[4], 'u')
if uid then drop(uid, ARGV[4], ARGV[5]) end
return ended
