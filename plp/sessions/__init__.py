"""Session stores behind the `SessionStore` interface; `make_store` picks one from Settings."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..config import Settings
from .base import Session, SessionStore, SessionStoreUnavailable, hash_token

__all__ = ["Session", "SessionStore", "SessionStoreUnavailable", "hash_token", "make_store"]


def make_store(settings: Settings, *, clock: Callable[[], float] = time.time) -> SessionStore:
    """The store named by `session-backend`, sized by the session settings."""
    kwargs = dict(
        idle_timeout=settings.session_idle_timeout,
        max_age=settings.session_max_age,
        per_user=settings.sessions_per_user,
        clock=clock,
    )
    if settings.session_backend == "redis":
        from ..redis.sessions import RedisSessionStore

        return RedisSessionStore(settings.redis_url, **kwargs)
    from .memory import MemorySessionStore

    return MemorySessionStore(**kwargs)
