"""Shared sessions and abuse limits in Redis, so several plp processes behave as one.

Keys (all under a prefix, `plp:` by default):

- `s:<key>`      hash of one session (`key` = `hash_token(token)`, never the token), with a TTL
                 equal to its deadline: Redis drops expired sessions by itself.
- `u:<user_id>`  sorted set of the user's session keys by creation time (list, end-all, cap).
- `exp`          sorted set of `<user_id>:<key>` by deadline, so the pruner can announce
                 expiries to chat sockets in O(expired), and clean the user index.
- `db<N>:session-end`  pub/sub channel (N: the database number; channels are server-wide):
                 one JSON notice per ended session.
- `t:a:<name>`, `t:ip:<addr>`, `t:reg:<addr>`: throttle state (`RedisThrottle`).

Every change touching more than one key runs as one Lua script, so concurrent processes never
see half a session. Deadlines come from the store's `clock` (tests move it); TTLs are the same
deadlines turned into real seconds, and `get` checks the deadline itself, so an expired session
is refused even while its key still exists.

End notices: each script that ends sessions PUBLISHes a notice inside the same script, so the
notice goes out exactly when the session ends. The ending process calls its own listeners
directly (no round trip, and it still works while its subscription reconnects) and ignores its
own notices when they come back; other processes hear them through a background subscriber,
started by `start()` or lazily by the first store call.

Redis unreachable: every call raises `SessionStoreUnavailable` (HTTP 503) instead of waiting;
the client reconnects by itself on the next call once Redis answers again. Notices published
while a process's subscriber was disconnected are lost to that process; its chat sockets still
re-check their session on every message.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import secrets
import sys
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..throttle import (
    ADDRESS_WINDOW,
    BASE_BLOCK,
    MAX_BLOCK,
    REGISTRATION_WINDOW,
    Throttle,
    block_seconds,
)
from ..sessions.base import (
    END_CAPPED,
    END_EXPIRED,
    TOUCH_GRANULARITY,
    Session,
    SessionStore,
    SessionStoreUnavailable,
    hash_token,
    mint_session,
)

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "plp:"
END_CHANNEL = "session-end"
# Fail fast while Redis is down: a request waits at most about this long before its 503.
CONNECT_TIMEOUT = 1.0
COMMAND_TIMEOUT = 2.0
# The user index outlives its newest session by this much, then Redis drops it.
INDEX_SLACK_MS = 60_000
PRUNE_BATCH = 1000
RESUBSCRIBE_MAX_DELAY = 5.0

_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)

P = ParamSpec("P")
R = TypeVar("R")


def unavailable(
    method: Callable[P, Awaitable[R]],
) -> Callable[P, Awaitable[R]]:
    """Turn 'Redis cannot be reached' into `SessionStoreUnavailable` (503 for the request)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except _DOWN as exc:
            # Not logged here: the caller (a handler's 503, the pruner) says what failed.
            raise SessionStoreUnavailable(
                f"Redis cannot be reached ({exc.__class__.__name__})"
            ) from exc

    return wrapper


def connect(url: str, *, blocking: bool = False) -> aioredis.Redis:
    """A client that fails fast and reconnects by itself; `blocking` for a pub/sub reader."""
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=None if blocking else COMMAND_TIMEOUT,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
        health_check_interval=15 if blocking else 0,
    )


async def subscribe_forever(
    url: str,
    channel: str,
    on_data: Callable[[Any], None],
    subscribed: asyncio.Event,
    what: str,
) -> None:
    """Feed every message on a pub/sub channel to `on_data` until cancelled.

    `subscribed` is set while the subscription stands. A lost connection is logged as one
    line and retried with a back-off doubling to RESUBSCRIBE_MAX_DELAY, so plp recovers by
    itself when Redis comes back.
    """
    delay = 0.1
    client = connect(url, blocking=True)
    try:
        while True:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                subscribed.set()
                if delay > 0.1:
                    log.info("%s restored", what)
                delay = 0.1
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        on_data(message.get("data"))
            except _DOWN as exc:
                subscribed.clear()
                log.warning("%s lost (%s); retrying in %.1f s", what, exc.__class__.__name__, delay)
            except Exception:
                subscribed.clear()
                log.exception("%s failed; retrying in %.1f s", what, delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESUBSCRIBE_MAX_DELAY)
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


def channel_name(client: aioredis.Redis, prefix: str, name: str) -> str:
    """A pub/sub channel for this prefix and database number.

    Keys live in a numbered database but pub/sub channels are server-wide, so the number is
    part of the name: deployments (or test runs) on different databases never hear each other.
    """
    db = client.connection_pool.connection_kwargs.get("db", 0)
    return f"{prefix}db{db}:{name}"


# Shared by the scripts that end sessions: delete one session from every structure and
# announce it. ARGV[1..3] are always the prefix, the publisher's origin id and the channel.
_LUA_PRELUDE = """
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
"""

# ARGV: prefix, origin, channel, key, uid, handle, created, ip, ua, ttl_ms, per_user, now, deadline,
#       index_ttl_ms, expired_reason, capped_reason
_LUA_CREATE = (
    _LUA_PRELUDE
    + """
local key, uid = ARGV[4], ARGV[5]
local ukey = p .. 'u:' .. uid
local now, per_user = tonumber(ARGV[12]), tonumber(ARGV[11])
for _, k in ipairs(redis.call('ZRANGE', ukey, 0, -1)) do
  local d = redis.call('ZSCORE', p .. 'exp', uid .. ':' .. k)
  if not d then
    redis.call('ZREM', ukey, k)
  elseif tonumber(d) <= now or redis.call('EXISTS', p .. 's:' .. k) == 0 then
    drop(uid, k, ARGV[15])
  end
end
while redis.call('ZCARD', ukey) >= per_user do
  drop(uid, redis.call('ZRANGE', ukey, 0, 0)[1], ARGV[16])
end
local s = p .. 's:' .. key
redis.call('HSET', s, 'h', ARGV[6], 'u', uid, 'c', ARGV[7], 'l', ARGV[7], 'ip', ARGV[8],
  'ua', ARGV[9])
redis.call('PEXPIRE', s, ARGV[10])
redis.call('ZADD', ukey, ARGV[7], key)
redis.call('PEXPIRE', ukey, ARGV[14])
redis.call('ZADD', p .. 'exp', ARGV[13], uid .. ':' .. key)
return ended
"""
)

# ARGV: prefix, origin, channel, key, reason
_LUA_END = (
    _LUA_PRELUDE
    + """
local uid = redis.call('HGET', p .. 's:' .. ARGV[4], 'u')
if uid then drop(uid, ARGV[4], ARGV[5]) end
return ended
"""
)

# ARGV: prefix, origin, channel, uid, handle, reason
_LUA_END_BY_HANDLE = (
    _LUA_PRELUDE
    + """
local uid = ARGV[4]
for _, k in ipairs(redis.call('ZRANGE', p .. 'u:' .. uid, 0, -1)) do
  local h = redis.call('HMGET', p .. 's:' .. k, 'h', 'u')
  if h[1] == ARGV[5] and h[2] == uid then
    drop(uid, k, ARGV[6])
    break
  end
end
return ended
"""
)

# ARGV: prefix, origin, channel, uid, except_key, reason, expired_reason
_LUA_END_ALL = (
    _LUA_PRELUDE
    + """
local uid = ARGV[4]
for _, k in ipairs(redis.call('ZRANGE', p .. 'u:' .. uid, 0, -1)) do
  if k ~= ARGV[5] then
    if redis.call('EXISTS', p .. 's:' .. k) == 1 then
      drop(uid, k, ARGV[6])
    else
      drop(uid, k, ARGV[7])
    end
  end
end
return ended
"""
)

# ARGV: prefix, origin, channel, key, uid, now, ttl_ms, deadline
_LUA_TOUCH = """
local s = ARGV[1] .. 's:' .. ARGV[4]
if redis.call('EXISTS', s) == 0 then return 0 end
redis.call('HSET', s, 'l', ARGV[6])
redis.call('PEXPIRE', s, ARGV[7])
redis.call('ZADD', ARGV[1] .. 'exp', 'XX', ARGV[8], ARGV[5] .. ':' .. ARGV[4])
return 1
"""

# ARGV: prefix, origin, channel, now, batch, reason
_LUA_PRUNE = (
    _LUA_PRELUDE
    + """
for _, m in ipairs(redis.call('ZRANGEBYSCORE', p .. 'exp', '-inf', ARGV[4], 'LIMIT', 0,
    tonumber(ARGV[5]))) do
  local colon = string.find(m, ':', 1, true)
  drop(string.sub(m, 1, colon - 1), string.sub(m, colon + 1), ARGV[6])
end
return ended
"""
)


def _ms(seconds: float) -> int:
    """A positive TTL in milliseconds (Redis deletes a key given a TTL of 0 or less)."""
    return max(1, math.ceil(seconds * 1000))


class RedisSessionStore(SessionStore):
    """`SessionStore` in Redis, shared by every process pointing at the same URL and prefix."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = url
        self.prefix = prefix
        # Identifies this process's notices so it does not hear its own twice.
        self.origin = secrets.token_hex(8)
        self._redis = connect(url)
        self.channel = channel_name(self._redis, prefix, END_CHANNEL)
        self._scripts = {
            name: self._redis.register_script(source)
            for name, source in (
                ("create", _LUA_CREATE),
                ("end", _LUA_END),
                ("end_by_handle", _LUA_END_BY_HANDLE),
                ("end_all", _LUA_END_ALL),
                ("touch", _LUA_TOUCH),
                ("prune", _LUA_PRUNE),
            )
        }
        self._listener: asyncio.Task | None = None
        self._subscribed = asyncio.Event()
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    @unavailable
    async def ping(self) -> None:
        """Raise SessionStoreUnavailable unless Redis answers."""
        await self._redis.ping()

    async def start(self) -> None:
        """Start the end-notice subscriber and wait until it listens (Redis must be up)."""
        await self.ping()
        self._ensure_listening()
        try:
            await asyncio.wait_for(self._subscribed.wait(), CONNECT_TIMEOUT + COMMAND_TIMEOUT)
        except TimeoutError as exc:
            raise SessionStoreUnavailable("cannot subscribe to session-end notices") from exc

    def _ensure_listening(self) -> None:
        if self._listener is None and not self._closed:
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        """Deliver other processes' end notices to our listeners; resubscribe after outages."""
        await subscribe_forever(
            self.url, self.channel, self._deliver, self._subscribed, "session-end subscription"
        )

    def _deliver(self, data: Any) -> None:
        try:
            notice = json.loads(data)
            origin, key, user_id, reason = notice["o"], notice["k"], int(notice["u"]), notice["r"]
        except (TypeError, ValueError, KeyError):
            log.warning("ignoring a malformed session-end notice")
            return
        if origin != self.origin:
            self._notify_end(str(key), user_id, str(reason))

    async def close(self) -> None:
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        await self._redis.aclose()

    # -- helpers ---------------------------------------------------------------------------

    async def _run(self, name: str, *args: Any) -> list[str]:
        """Run a script that may end sessions, and tell our own listeners at once."""
        self._ensure_listening()
        ended = await self._scripts[name](args=[self.prefix, self.origin, self.channel, *args])
        for i in range(0, len(ended or ()), 3):
            self._notify_end(ended[i], int(ended[i + 1]), ended[i + 2])
        return ended or []

    def _deadline(self, created_at: float, last_seen: float) -> float:
        return min(last_seen + self.idle_timeout, created_at + self.max_age)

    @staticmethod
    def _parse(key: str, fields: dict[str, str]) -> Session | None:
        try:
            return Session(
                key=key,
                handle=fields["h"],
                user_id=int(fields["u"]),
                created_at=float(fields["c"]),
                last_seen=float(fields["l"]),
                ip=fields["ip"],
                user_agent=sys.intern(fields["ua"]),
            )
        except (KeyError, ValueError):
            return None

    async def _load(self, key: str, fields: dict[str, str]) -> Session | None:
        session = self._parse(key, fields) if fields else None
        if session is None:
            return None
        if self.clock() >= session.deadline(self.idle_timeout, self.max_age):
            await self._run("end", key, END_EXPIRED)
            return None
        return session

    # -- SessionStore ----------------------------------------------------------------------

    @unavailable
    async def create(self, user_id: int, *, ip: str, user_agent: str) -> tuple[str, Session]:
        now = self.clock()
        token, session = mint_session(user_id, ip=ip, user_agent=user_agent, now=now)
        deadline = self._deadline(now, now)
        await self._run(
            "create",
            session.key,
            user_id,
            session.handle,
            repr(now),
            ip,
            session.user_agent,
            _ms(deadline - now),
            self.per_user,
            repr(now),
            repr(deadline),
            _ms(self.max_age) + INDEX_SLACK_MS,
            END_EXPIRED,
            END_CAPPED,
        )
        return token, session

    async def get(self, token: str) -> Session | None:
        return await self.get_by_key(hash_token(token))

    @unavailable
    async def get_by_key(self, key: str) -> Session | None:
        self._ensure_listening()
        return await self._load(key, await self._redis.hgetall(self.prefix + "s:" + key))

    @unavailable
    async def touch(self, session: Session) -> None:
        now = self.clock()
        if now - session.last_seen < TOUCH_GRANULARITY:
            return
        deadline = self._deadline(session.created_at, now)
        touched = await self._scripts["touch"](
            args=[
                self.prefix,
                self.origin,
                self.channel,
                session.key,
                session.user_id,
                repr(now),
                _ms(deadline - now),
                repr(deadline),
            ]
        )
        if touched:
            session.last_seen = now

    @unavailable
    async def end(self, key: str, reason: str) -> bool:
        return bool(await self._run("end", key, reason))

    @unavailable
    async def end_by_handle(self, user_id: int, handle: str, reason: str) -> bool:
        return bool(await self._run("end_by_handle", user_id, handle, reason))

    @unavailable
    async def end_all_for_user(
        self, user_id: int, reason: str, *, except_key: str | None = None
    ) -> int:
        ended = await self._run("end_all", user_id, except_key or "", reason, END_EXPIRED)
        return sum(1 for i in range(2, len(ended), 3) if ended[i] == reason)

    @unavailable
    async def list_for_user(self, user_id: int) -> list[Session]:
        self._ensure_listening()
        keys = await self._redis.zrange(f"{self.prefix}u:{user_id}", 0, -1)
        if not keys:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(self.prefix + "s:" + key)
            rows = await pipe.execute()
        live = []
        for key, fields in zip(keys, rows, strict=True):
            session = await self._load(key, fields)
            if session is not None and session.user_id == user_id:
                live.append(session)
        return sorted(live, key=lambda s: s.created_at)

    @unavailable
    async def prune_expired(self) -> int:
        """Announce sessions past their deadline and drop their index entries; return 0.

        Redis has already deleted (or will delete) the sessions themselves by TTL, so
        nothing here is a removal the interface counts; the work is announcing the expiries
        to chat sockets and keeping the indexes small. Cost grows with the number expired.
        """
        while True:
            ended = await self._run("prune", repr(self.clock()), PRUNE_BATCH, END_EXPIRED)
            if len(ended) < PRUNE_BATCH * 3:
                return 0

    @unavailable
    async def count(self) -> int:
        return await self._redis.zcard(self.prefix + "exp")


# -- throttle ------------------------------------------------------------------------------

# ARGV: now, account_limit, base_block, max_block; KEYS: account hash
_LUA_LOGIN_FAILED = """
local failures = redis.call('HINCRBY', KEYS[1], 'f', 1)
redis.call('HSET', KEYS[1], 'l', ARGV[1])
local limit = tonumber(ARGV[2])
local block = 0
if failures >= limit then
  block = math.min(tonumber(ARGV[3]) * 2 ^ math.min(failures - limit, 16), tonumber(ARGV[4]))
end
redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(ARGV[4]) + block) * 1000) + 1000)
return failures
"""

# ARGV: now, maxlen, window; KEYS: event list
_LUA_EVENT = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) * 1000) + 1000)
return 1
"""


def _window_wait(events: list[str], limit: int, window: float, now: float) -> float:
    """MemoryThrottle's sliding-window rule over the last `limit` event times."""
    times = [t for t in (float(e) for e in events) if t > now - window]
    if len(times) < limit:
        return 0.0
    return max(times[-limit] + window - now, 0.001)


class RedisThrottle(Throttle):
    """`Throttle` in Redis with MemoryThrottle's rules; keys expire when they stop limiting."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prefix = prefix + "t:"
        self._redis = connect(url)
        self._failed = self._redis.register_script(_LUA_LOGIN_FAILED)
        self._event = self._redis.register_script(_LUA_EVENT)

    def _account(self, username: str) -> str:
        return self.prefix + "a:" + username

    @unavailable
    async def login_wait(self, username: str, ip: str) -> tuple[float, str]:
        now = self.clock()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self._account(username), "f", "l")
            pipe.lrange(self.prefix + "ip:" + ip, 0, -1)
            (failures, last), events = await pipe.execute()
        if failures is not None and last is not None:
            wait = float(last) + block_seconds(int(failures), self.account_limit)
            if wait > now:
                return wait - now, "account"
        wait = _window_wait(events, self.address_limit, ADDRESS_WINDOW, now)
        return (wait, "address") if wait else (0.0, "")

    @unavailable
    async def login_failed(self, username: str, ip: str) -> None:
        now = repr(self.clock())
        await self._failed(
            keys=[self._account(username)],
            args=[now, self.account_limit, BASE_BLOCK, MAX_BLOCK],
        )
        await self._event(
            keys=[self.prefix + "ip:" + ip], args=[now, self.address_limit, ADDRESS_WINDOW]
        )

    @unavailable
    async def login_succeeded(self, username: str) -> None:
        await self._redis.delete(self._account(username))

    @unavailable
    async def registration_wait(self, ip: str) -> float:
        events = await self._redis.lrange(self.prefix + "reg:" + ip, 0, -1)
        return _window_wait(events, self.registration_limit, REGISTRATION_WINDOW, self.clock())

    @unavailable
    async def registered(self, ip: str) -> None:
        await self._event(
            keys=[self.prefix + "reg:" + ip],
            args=[repr(self.clock()), self.registration_limit, REGISTRATION_WINDOW],
        )

    async def prune(self) -> int:
        return 0  # every key carries a TTL past the point where it stops limiting anyone

    async def close(self) -> None:
        await self._redis.aclose()
