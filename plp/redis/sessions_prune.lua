-- Announce (and drop from the indexes) up to `batch` sessions past their deadline.
-- ARGV: prefix, origin, channel, now, batch, reason
for _, m in ipairs(redis.call('ZRANGEBYSCORE', p .. 'exp', '-inf', ARGV[4], 'LIMIT', 0,
    tonumber(ARGV[5]))) do
  local colon = string.find(m, ':', 1, true)
  drop(string.sub(m, 1, colon - 1), string.sub(m, colon + 1), ARGV[6])
end
return ended
