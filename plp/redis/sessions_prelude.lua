-- Prepended to every script that ends sessions: `drop` deletes one session from every
-- structure and announces it on the session-end channel.
-- ARGV[1..3] are always: prefix, the publisher's origin id, the channel.
local p = ARGV[1]
local origin = ARGV[2]
local channel = ARGV[3]
local ended = {}
local function drop(uid, k, reason)
  redis.call('DEL', p .. 's:' .. k)
  redis.call('ZREM', p .. 'u:' .. uid, k)
  redis.call('ZREM', p .. 'exp', uid .. ':' .. k)
  redis.call('PUBLISH', channel,
    cjson.encode({o = origin, k = k, u = tostring(uid), r = reason}))
  table.insert(ended, k)
  table.insert(ended, tostring(uid))
  table.insert(ended, reason)
end
