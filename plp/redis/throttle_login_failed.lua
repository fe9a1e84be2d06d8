-- Count one failed login against an account; the key outlives any block it causes.
-- KEYS: account hash. ARGV: now, account_limit, base_block, max_block
local failures = redis.call('HINCRBY', KEYS[1], 'f', 1)
redis.call('HSET', KEYS[1], 'l', ARGV[1])
local limit = tonumber(ARGV[2])
local block = 0
if failures >= limit then
  block = math.min(tonumber(ARGV[3]) * 2 ^ math.min(failures - limit, 16), tonumber(ARGV[4]))
end
redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(ARGV[4]) + block) * 1000) + 1000)
return failures
