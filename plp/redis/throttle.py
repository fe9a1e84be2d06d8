"""`RedisThrottle`: the login and registration limits of SPEC §9, shared through Redis.

Keys (under the prefix, `plp:` by default): `t:a:<name>` hash of an account's consecutive
failures and the last one's time; `t:ip:<addr>` and `t:reg:<addr>` lists of an address's
last failed-login and registration times; `t:cj:<user id>` a user's last wrong class join
codes; `t:ch:<addr>` an address's last passkey sign-in challenges. Every key expires once
it stops limiting anyone.
The rules are `MemoryThrottle`'s (plp/throttle.py); the two writes are the `throttle_*.lua`
scripts beside this module.
"""

from __future__ import annotations

from typing import Any

from ..throttle import (
    ADDRESS_WINDOW,
    BASE_BLOCK,
    CHALLENGE_WINDOW,
    JOIN_WINDOW,
    MAX_BLOCK,
    REGISTRATION_WINDOW,
    Throttle,
    block_seconds,
)
from .client import DEFAULT_PREFIX, connect, lua, unavailable

_LOGIN_FAILED = lua("throttle_login_failed")
_EVENT = lua("throttle_event")


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
        self._failed = self._redis.register_script(_LOGIN_FAILED)
        self._event = self._redis.register_script(_EVENT)

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
    async def address_wait(self, ip: str) -> float:
        events = await self._redis.lrange(self.prefix + "ip:" + ip, 0, -1)
        return _window_wait(events, self.address_limit, ADDRESS_WINDOW, self.clock())

    @unavailable
    async def address_failed(self, ip: str) -> None:
        await self._event(
            keys=[self.prefix + "ip:" + ip],
            args=[repr(self.clock()), self.address_limit, ADDRESS_WINDOW],
        )

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

    @unavailable
    async def join_wait(self, user_id: int) -> float:
        events = await self._redis.lrange(self.prefix + f"cj:{user_id}", 0, -1)
        return _window_wait(events, self.join_limit, JOIN_WINDOW, self.clock())

    @unavailable
    async def join_failed(self, user_id: int) -> None:
        await self._event(
            keys=[self.prefix + f"cj:{user_id}"],
            args=[repr(self.clock()), self.join_limit, JOIN_WINDOW],
        )

    @unavailable
    async def challenge_wait(self, ip: str) -> float:
        events = await self._redis.lrange(self.prefix + "ch:" + ip, 0, -1)
        return _window_wait(events, self.challenge_limit, CHALLENGE_WINDOW, self.clock())

    @unavailable
    async def challenge_made(self, ip: str) -> None:
        await self._event(
            keys=[self.prefix + "ch:" + ip],
            args=[repr(self.clock()), self.challenge_limit, CHALLENGE_WINDOW],
        )

    async def prune(self) -> int:
        return 0  # every key carries a TTL past the point where it stops limiting anyone

    async def close(self) -> None:
        await self._redis.aclose()
