-- End the user's session with this public handle.
-- ARGV: prefix, origin, channel, uid, handle, reason
local uid = ARGV[4]
for _, k in ipairs(redis.call('ZRANGE', p .. 'u:' .. uid, 0, -1)) do
  local h = redis.call('HMGET', p .. 's:' .. k, 'h', 'u')
  if h[1] == ARGV[5] and h[2] == uid then
    drop(uid, k, ARGV[6])
    break
  end
end
return ended
