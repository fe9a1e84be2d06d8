-- Admit one socket unless the user or the address is at its cap. Returns '' or the refusal.
-- ARGV[6..]: user key, address key, per_user, per_address.
local ukey, akey = p .. ARGV[6], p .. ARGV[7]
if live_count(ukey) >= tonumber(ARGV[8]) then return 'user' end
if live_count(akey) >= tonumber(ARGV[9]) then return 'address' end
redis.call('HINCRBY', ukey, node, 1)
redis.call('HINCRBY', akey, node, 1)
redis.call('SADD', p .. 'ws:n:' .. node, ukey, akey)
return ''
