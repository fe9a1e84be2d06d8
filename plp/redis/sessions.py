"""`RedisSessionStore`: sessions in Redis, so several plp processes share them.

Keys (all under a prefix, `plp:` by default):

- `s:<key>`      hash of one session (`key` = `hash_token(token)`, never the token), with a TTL
                 equal to its deadline: Redis drops expired sessions by itself.
- `u:<user_id>`  sorted set of the user's session keys by creation time (list, end-all, cap).
- `exp`          sorted set of `<user_id>:<key>` by deadline, so the pruner can announce
                 expiries to chat sockets in O(expired), and clean the user index.
- `db<N>:session-end`  pub/sub channel (N: the database number; channels are server-wide):
                 one JSON notice per ended session.

Every change touching more than one key runs as one Lua script (the `sessions_*.lua` files
beside this module), so concurrent processes never see half a session. Deadlines come from
the store's `clock` (tests move it); TTLs are the same deadlines turned into real seconds,
and `get` checks the deadline itself, so an expired session is refused even while its key
still exists.

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
import json
import logging
import math
import secrets
import sys
from typing import Any

from ..sessions.base import (
    END_CAPPED,
    END_EXPIRED,
    METHOD_PASSWORD,
    TOUCH_GRANULARITY,
    Session,
    SessionStore,
    SessionStoreUnavailable,
    hash_token,
    mint_session,
)
from .client import (
    COMMAND_TIMEOUT,
    CONNECT_TIMEOUT,
    DEFAULT_PREFIX,
    channel_name,
    connect,
    lua,
    subscribe_forever,
    unavailable,
)

log = logging.getLogger(__name__)

END_CHANNEL = "session-end"
# The user index outlives its newest session by this much, then Redis drops it.
INDEX_SLACK_MS = 60_000
PRUNE_BATCH = 1000

# The scripts that end sessions start with sessions_prelude.lua (ARGV[1..3]: prefix, origin,
# channel); the `ARGV:` line atop each file lists the rest.
_SCRIPTS = {
    name: lua("sessions_prelude", f"sessions_{name}")
    for name in ("create", "end", "end_by_handle", "end_all", "prune")
}
_SCRIPTS["touch"] = lua("sessions_touch")
_SCRIPTS["reauth"] = lua("sessions_reauth")


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
            name: self._redis.register_script(source) for name, source in _SCRIPTS.items()
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
            self.url,
            self.channel,
            self._deliver,
            self._subscribed,
            "session-end subscription",
            log,
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
                method=fields.get("m", METHOD_PASSWORD),
                auth_at=float(fields.get("a", "0")),
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
    async def create(
        self, user_id: int, *, ip: str, user_agent: str, method: str = METHOD_PASSWORD
    ) -> tuple[str, Session]:
        now = self.clock()
        token, session = mint_session(user_id, ip=ip, user_agent=user_agent, now=now, method=method)
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
            method,
        )
        return token, session

    @unavailable
    async def renew_auth(self, session: Session) -> bool:
        now = self.clock()
        renewed = await self._scripts["reauth"](
            args=[self.prefix, self.origin, self.channel, session.key, repr(now)]
        )
        if renewed:
            session.auth_at = now
        return bool(renewed)

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
