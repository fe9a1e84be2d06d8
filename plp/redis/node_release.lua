-- Release one socket's slots.
-- ARGV[6..]: user key, address key.
for i = 6, 7 do
  local k = p .. ARGV[i]
  if redis.call('HINCRBY', k, node, -1) <= 0 then
    redis.call('HDEL', k, node)
    redis.call('SREM', p .. 'ws:n:' .. node, k)
  end
end
return 1
