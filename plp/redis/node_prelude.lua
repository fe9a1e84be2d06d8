-- Prepended to every node script (plp/redis/node.py says what the keys hold).
-- ARGV[1..5] are always: prefix, this node, the chat channel, the broker's event pattern
-- for presence frames (string.format: channel, excluded connection, frame), and the
-- broker's 'nobody excluded' marker.
local p, node, chan, event, nobody = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local function alive(n)
  return n == node or redis.call('EXISTS', p .. 'node:' .. n) == 1
end
local function announce(ch, user, status, exclude)
  redis.call('PUBLISH', chan, string.format(event, ch, exclude,
    '{"type":"presence","channel":' .. ch .. ',"user":' .. user ..
    ',"status":"' .. status .. '"}'))
end
local function pr_add(ch, uid, user, exclude)
  local set = p .. 'pr:' .. ch .. ':' .. uid
  redis.call('SADD', p .. 'pr:n:' .. node, ch .. ':' .. uid)
  redis.call('HSET', p .. 'pr:' .. ch, uid, user)
  if redis.call('SISMEMBER', set, node) == 1 then return end
  local before = false
  for _, m in ipairs(redis.call('SMEMBERS', set)) do
    if alive(m) then before = true break end
  end
  redis.call('SADD', set, node)
  if not before then announce(ch, user, 'online', exclude) end
end
local function pr_remove(n, ch, uid, say)
  local set = p .. 'pr:' .. ch .. ':' .. uid
  redis.call('SREM', p .. 'pr:n:' .. n, ch .. ':' .. uid)
  if redis.call('SREM', set, n) == 0 then return end
  for _, m in ipairs(redis.call('SMEMBERS', set)) do
    if alive(m) then return end
  end
  redis.call('DEL', set)
  local user = redis.call('HGET', p .. 'pr:' .. ch, uid)
  redis.call('HDEL', p .. 'pr:' .. ch, uid)
  if user and say then announce(ch, user, 'offline', nobody) end
end
local function split(e)
  local c = string.find(e, ':', 1, true)
  return string.sub(e, 1, c - 1), string.sub(e, c + 1)
end
local function withdraw(n)
  local idx = p .. 'ws:n:' .. n
  for _, k in ipairs(redis.call('SMEMBERS', idx)) do redis.call('HDEL', k, n) end
  redis.call('DEL', idx)
  for _, e in ipairs(redis.call('SMEMBERS', p .. 'pr:n:' .. n)) do
    local ch, uid = split(e)
    pr_remove(n, ch, uid, true)
  end
  redis.call('DEL', p .. 'pr:n:' .. n)
end
local function live_count(key)
  local total = 0
  local h = redis.call('HGETALL', key)
  for i = 1, #h, 2 do
    if alive(h[i]) then total = total + tonumber(h[i + 1]) end
  end
  return total
end
