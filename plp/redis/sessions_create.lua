-- Create a session: forget the user's dead ones, end the oldest past the cap, store it.
-- ARGV: prefix, origin, channel, key, uid, handle, created, ip, ua, ttl_ms, per_user, now,
--       deadline, index_ttl_ms, expired_reason, capped_reason, method
local key, uid = ARGV[4], ARGV[5]
local ukey = p .. 'u:' .. uid
local now, per_user = tonumber(ARGV[12]), tonumber(ARGV[11])
for _, k in ipairs(redis.call('ZRANGE', ukey, 0, -1)) do
  local d = redis.call('ZSCORE', p .. 'exp', uid .. ':' .. k)
  if not d then
    redis.call('ZREM', ukey, k)
  elseif tonumber(d) <= now or redis.call('EXISTS', p .. 's:' .. k) == 0 then
    drop(uid, k, ARGV[15])
  end
end
while redis.call('ZCARD', ukey) >= per_user do
  drop(uid, redis.call('ZRANGE', ukey, 0, 0)[1], ARGV[16])
end
local s = p .. 's:' .. key
redis.call('HSET', s, 'h', ARGV[6], 'u', uid, 'c', ARGV[7], 'l', ARGV[7], 'ip', ARGV[8],
  'ua', ARGV[9], 'm', ARGV[17], 'a', ARGV[7])
redis.call('PEXPIRE', s, ARGV[10])
redis.call('ZADD', ukey, ARGV[7], key)
redis.call('PEXPIRE', ukey, ARGV[14])
redis.call('ZADD', p .. 'exp', ARGV[13], uid .. ':' .. key)
return ended
