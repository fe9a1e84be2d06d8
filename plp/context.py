"""The Context every handler reaches as `self.ctx`, its backends and its hooks.

`make_backends` is the one place that picks where sessions, abuse limits and chat fan-out
live: in this process's memory, or in Redis (`session-backend redis`) so several processes
act as one. Storage (SQLite or PostgreSQL) is picked by `plp.storage.open_database`.

`Hooks` are typed listener lists: optional parts (metrics) add listeners, and the code where
the event happens calls them, so neither side patches the other. This module sits below the
application and the handlers and imports neither.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from .audit import Auditor
from .auth.passwords import PasswordHasher
from .chat.hub import ChatHub
from .chat.wire import text_frame
from .config import Settings
from .pending import MemoryPendingStore, PendingStore
from .sessions.base import SessionStore
from .sessions.cookie import CookieSigner
from .sessions.memory import MemorySessionStore
from .storage.base import Message
from .storage.store import Store
from .throttle import MemoryThrottle, Throttle

Clock = Callable[[], float]


@dataclass
class Hooks:
    """Listeners called, in order, where each event happens."""

    # (status, seconds) after every HTTP response (plp/log.py)
    on_request: list[Callable[[int, float], None]] = field(default_factory=list)
    # (sessions removed, seconds) after every pruner run (plp/server.py)
    on_prune: list[Callable[[int, float], None]] = field(default_factory=list)
    # a chat message just committed to the database (the chat socket's send)
    on_message_stored: list[Callable[[Message], None]] = field(default_factory=list)
    # awaited at SIGTERM/SIGINT before in-flight requests are drained (plp/server.py)
    on_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def request_done(self, status: int, seconds: float) -> None:
        """Tell the on_request listeners."""
        for listener in self.on_request:
            listener(status, seconds)

    def pruned(self, removed: int, seconds: float) -> None:
        """Tell the on_prune listeners."""
        for listener in self.on_prune:
            listener(removed, seconds)

    def message_stored(self, message: Message) -> None:
        """Tell the on_message_stored listeners."""
        for listener in self.on_message_stored:
            listener(message)

    async def shutdown(self) -> None:
        """Await the on_shutdown listeners one after the other."""
        for listener in self.on_shutdown:
            await listener()


@dataclass
class Backends:
    """The session store, the throttle and the chat hub, picked together by make_backends."""

    store: SessionStore
    throttle: Throttle
    hub: ChatHub
    pending: PendingStore

    async def start(self) -> None:
        """Connect the shared ones before serving; SessionStoreUnavailable if Redis is down."""
        await self.store.start()
        await self.throttle.start()
        await self.hub.start()
        await self.pending.start()

    async def close(self) -> None:
        """Release them all; safe after the hub's shutdown or a failed start."""
        await self.hub.close()
        await self.store.close()
        await self.throttle.close()
        await self.pending.close()


def make_backends(settings: Settings, *, clock: Clock = time.time) -> Backends:
    """Memory backends, or Redis ones for `session-backend redis`; wired to each other."""
    if settings.session_backend == "redis":
        backends = _redis_backends(settings, clock)
    else:
        backends = Backends(
            store=MemorySessionStore(**_store_sizes(settings, clock)),
            throttle=MemoryThrottle(**_limits(settings, clock)),
            hub=ChatHub(wire=text_frame),
            pending=MemoryPendingStore(clock=clock),
        )
    # An ended session (logout, revocation, expiry...) closes its chat sockets.
    backends.store.add_end_listener(backends.hub.session_ended)
    return backends


def _redis_backends(settings: Settings, clock: Clock) -> Backends:
    # Imported here: the redis package is an optional dependency (the `redis` extra).
    from .redis.broker import RedisBroker
    from .redis.pending import RedisPendingStore
    from .redis.sessions import RedisSessionStore
    from .redis.shared import make_shared
    from .redis.throttle import RedisThrottle

    url = settings.redis_url
    # Socket caps and presence are counted in Redis too, so the processes act as one.
    sockets, presence = make_shared(url)
    return Backends(
        store=RedisSessionStore(url, **_store_sizes(settings, clock)),
        throttle=RedisThrottle(url, **_limits(settings, clock)),
        hub=ChatHub(RedisBroker(url), wire=text_frame, presence=presence, sockets=sockets),
        pending=RedisPendingStore(url, clock=clock),
    )


def _store_sizes(settings: Settings, clock: Clock) -> dict[str, Any]:
    return dict(
        idle_timeout=settings.session_idle_timeout,
        max_age=settings.session_max_age,
        per_user=settings.sessions_per_user,
        clock=clock,
    )


def _limits(settings: Settings, clock: Clock) -> dict[str, Any]:
    return dict(
        account_limit=settings.login_failures_per_account,
        address_limit=settings.login_failures_per_address,
        registration_limit=settings.registrations_per_address,
        join_limit=settings.class_join_failures,
        clock=clock,
    )


@dataclass
class Context:
    """What handlers need, made once per process; handlers reach it as `self.ctx`."""

    settings: Settings
    db: Store
    backends: Backends
    hasher: PasswordHasher
    audit: Auditor
    signer: CookieSigner
    clock: Clock = time.time
    hooks: Hooks = field(default_factory=Hooks)
    _tasks: set[asyncio.Task] = field(default_factory=set)

    @property
    def store(self) -> SessionStore:
        """The session store."""
        return self.backends.store

    @property
    def throttle(self) -> Throttle:
        """The login and registration limits."""
        return self.backends.throttle

    @property
    def pending(self) -> PendingStore:
        """Single-use state of passkey and second-factor ceremonies (plp/pending.py)."""
        return self.backends.pending

    @property
    def hub(self) -> ChatHub:
        """The chat hub."""
        return self.backends.hub

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a coroutine in the background, keeping a reference until it finishes."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def make_context(
    settings: Settings,
    *,
    db: Store,
    backends: Backends | None = None,
    clock: Clock = time.time,
) -> Context:
    """The Context for settings; `db` must already be migrated. The secret must be set."""
    if not settings.session_secret:
        raise ValueError("settings.session_secret is empty; call config.ensure_secret first")
    backends = backends or make_backends(settings, clock=clock)
    ctx = Context(
        settings=settings,
        db=db,
        backends=backends,
        hasher=PasswordHasher(settings.bcrypt_rounds),
        audit=Auditor(db, clock=clock),
        signer=CookieSigner(
            settings.cookie_name,
            settings.session_secret,
            settings.session_secret_previous,
            settings.session_max_age,
        ),
        clock=clock,
    )
    # At SIGTERM/SIGINT in-flight chat sends commit, then chat sockets get 1001.
    ctx.hooks.on_shutdown.append(backends.hub.shutdown)
    return ctx
