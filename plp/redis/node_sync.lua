-- Replace this node's entries with its whole truth; announce presence that changed.
-- ARGV[6]: JSON {"ws": {key: count}, "pr": [[channel, uid, user JSON], ...]}.
local want = cjson.decode(ARGV[6])
local idx = p .. 'ws:n:' .. node
for _, k in ipairs(redis.call('SMEMBERS', idx)) do redis.call('HDEL', k, node) end
redis.call('DEL', idx)
for k, c in pairs(want.ws) do
  redis.call('HSET', p .. k, node, c)
  redis.call('SADD', idx, p .. k)
end
local keep = {}
for _, w in ipairs(want.pr) do keep[w[1] .. ':' .. w[2]] = true end
for _, e in ipairs(redis.call('SMEMBERS', p .. 'pr:n:' .. node)) do
  if not keep[e] then
    local ch, uid = split(e)
    pr_remove(node, ch, uid, true)
  end
end
for _, w in ipairs(want.pr) do pr_add(w[1], w[2], w[3], nobody) end
return 1
