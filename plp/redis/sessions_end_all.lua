-- End all the user's sessions but one (except_key may be '').
-- ARGV: prefix, origin, channel, uid, except_key, reason, expired_reason
local uid = ARGV[4]
for _, k in ipairs(redis.call('ZRANGE', p .. 'u:' .. uid, 0, -1)) do
  if k ~= ARGV[5] then
    if redis.call('EXISTS', p .. 's:' .. k) == 1 then
      drop(uid, k, ARGV[6])
    else
      drop(uid, k, ARGV[7])
    end
  end
end
return ended
