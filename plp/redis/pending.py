"""`RedisPendingStore`: single-use ceremony state (plp/pending.py) shared by every process.

One string key per entry, `p:<kind>:<id>` under the prefix, holding JSON with a TTL, so a
passkey or second-factor sign-in started on one process finishes on another. `take` is
GETDEL (one command, atomic: two processes cannot both take an entry); `update` is SET with
XX and KEEPTTL, so it neither revives a taken entry nor extends its life.
"""

from __future__ import annotations

import json
from typing import Any

from ..pending import PendingStore
from .client import DEFAULT_PREFIX, connect, unavailable


class RedisPendingStore(PendingStore):
    """`PendingStore` in Redis; each entry lives exactly its TTL."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prefix = prefix + "p:"
        self._redis = connect(url)

    def _key(self, kind: str, key: str) -> str:
        return f"{self.prefix}{kind}:{key}"

    @staticmethod
    def _load(raw: str | None) -> dict[str, Any] | None:
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    @unavailable
    async def put(self, kind: str, key: str, value: dict[str, Any], ttl: float) -> None:
        await self._redis.set(self._key(kind, key), json.dumps(value), px=max(1, int(ttl * 1000)))

    @unavailable
    async def get(self, kind: str, key: str) -> dict[str, Any] | None:
        return self._load(await self._redis.get(self._key(kind, key)))

    @unavailable
    async def take(self, kind: str, key: str) -> dict[str, Any] | None:
        return self._load(await self._redis.getdel(self._key(kind, key)))

    @unavailable
    async def update(self, kind: str, key: str, value: dict[str, Any]) -> bool:
        done = await self._redis.set(self._key(kind, key), json.dumps(value), xx=True, keepttl=True)
        return bool(done)

    async def close(self) -> None:
        await self._redis.aclose()
