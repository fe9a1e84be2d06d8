-- Renew this node and reap dead ones. Returns 1 if this node's key had expired (its
-- entries may have been reaped: resync).
-- ARGV[6]: node TTL in ms.
local lost = redis.call('EXISTS', p .. 'node:' .. node) == 0
redis.call('SET', p .. 'node:' .. node, '1', 'PX', ARGV[6])
redis.call('SADD', p .. 'nodes', node)
for _, n in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
  if n ~= node and redis.call('EXISTS', p .. 'node:' .. n) == 0 then
    withdraw(n)
    redis.call('SREM', p .. 'nodes', n)
  end
end
if lost then return 1 end
return 0
