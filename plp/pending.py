"""Short-lived, single-use state of a ceremony in progress: a WebAuthn challenge, a half-done
sign-in waiting for its second factor (SPEC §14).

The browser holds only a random id (in a signed cookie or its session); the state stays here,
so it is single use (`take` reads and deletes it at once, also across processes with Redis),
expires on its own (`ttl`), and a half-done sign-in can count its wrong codes (`update`).

Anyone may start a passkey sign-in, so an anonymous client can create entries: the memory
store holds at most `capacity` of them and drops the oldest beyond that (that ceremony then
fails and its browser starts again), so memory stays bounded whatever is sent. Redis holds
each key for its TTL only (see plp/redis/pending.py).
"""

from __future__ import annotations

import abc
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

CAPACITY = 50_000


def new_id() -> str:
    """A fresh unguessable id for a pending entry (128 bits)."""
    return secrets.token_urlsafe(16)


class PendingStore(abc.ABC):
    """Single-use entries by (kind, id), each with its own time to live."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    @abc.abstractmethod
    async def put(self, kind: str, key: str, value: dict[str, Any], ttl: float) -> None:
        """Store `value` for `ttl` seconds (a JSON-serialisable dict)."""

    @abc.abstractmethod
    async def get(self, kind: str, key: str) -> dict[str, Any] | None:
        """The live value, or None when unknown, taken or expired."""

    @abc.abstractmethod
    async def take(self, kind: str, key: str) -> dict[str, Any] | None:
        """The live value, removed in the same step: of two concurrent takes one gets it."""

    @abc.abstractmethod
    async def update(self, kind: str, key: str, value: dict[str, Any]) -> bool:
        """Replace a live value, keeping its expiry; False when it is gone."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect before serving (a shared store)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class MemoryPendingStore(PendingStore):
    """`PendingStore` in this process, bounded to `capacity` entries (oldest dropped)."""

    def __init__(self, *, capacity: int = CAPACITY, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.capacity = capacity
        # Insertion order is expiry order per TTL; the pruning below only needs the front.
        self._entries: OrderedDict[tuple[str, str], tuple[float, dict[str, Any]]] = OrderedDict()

    def _prune(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, (deadline, _value) = next(iter(entries.items()))
            if deadline > now and len(entries) < self.capacity:
                break
            del entries[key]

    async def put(self, kind: str, key: str, value: dict[str, Any], ttl: float) -> None:
        now = self.clock()
        self._entries.pop((kind, key), None)
        self._prune(now)
        self._entries[(kind, key)] = (now + ttl, dict(value))

    def _live(self, kind: str, key: str) -> tuple[float, dict[str, Any]] | None:
        entry = self._entries.get((kind, key))
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._entries[(kind, key)]
            return None
        return entry

    async def get(self, kind: str, key: str) -> dict[str, Any] | None:
        entry = self._live(kind, key)
        return dict(entry[1]) if entry else None

    async def take(self, kind: str, key: str) -> dict[str, Any] | None:
        entry = self._live(kind, key)
        if entry is None:
            return None
        del self._entries[(kind, key)]
        return entry[1]

    async def update(self, kind: str, key: str, value: dict[str, Any]) -> bool:
        entry = self._live(kind, key)
        if entry is None:
            return False
        self._entries[(kind, key)] = (entry[0], dict(value))
        return True

    def __len__(self) -> int:
        return len(self._entries)
