-- The JSON of every user with a socket in the channel on a live node.
-- ARGV[6]: channel.
local out = {}
local h = redis.call('HGETALL', p .. 'pr:' .. ARGV[6])
for i = 1, #h, 2 do
  for _, m in ipairs(redis.call('SMEMBERS', p .. 'pr:' .. ARGV[6] .. ':' .. h[i])) do
    if alive(m) then table.insert(out, h[i + 1]) break end
  end
end
return out
