"""Everything plp keeps in Redis, so several processes behave as one (`session-backend redis`).

`client` (connections, channel names, the resubscribe loop, what "Redis is down" means, the
Lua loader), `sessions` (`RedisSessionStore`), `throttle` (`RedisThrottle`), `broker`
(`RedisBroker`: chat fan-out, and the one definition of its wire format) and `node` (socket
caps and presence). Every multi-key change is a Lua script kept in a `.lua` file beside the
module that runs it. Importing any module here needs the `redis` package (the `redis` extra);
this package itself imports nothing, so plp without Redis never loads it.
"""
