"""Redis connection helpers shared by the session store, the throttle and the chat parts.

A client fails fast (a request waits about CONNECT_TIMEOUT / COMMAND_TIMEOUT at most before
its 503) and reconnects by itself on the next call once Redis answers again. Pub/sub readers
resubscribe with a back-off after an outage. `unavailable` turns "Redis cannot be reached"
into `SessionStoreUnavailable`, which handlers answer with 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..sessions.base import SessionStoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "plp:"
# Fail fast while Redis is down: a request waits at most about this long before its 503.
CONNECT_TIMEOUT = 1.0
COMMAND_TIMEOUT = 2.0
RESUBSCRIBE_MAX_DELAY = 5.0

DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
# Redis answers but cannot store: out of memory (`maxmemory`), a read-only replica, or
# MISCONF (its last save to disk failed and `stop-writes-on-bgsave-error` is on).
CANNOT_STORE = (OutOfMemoryError, ReadOnlyError)

P = ParamSpec("P")
R = TypeVar("R")


def is_down(exc: BaseException) -> bool:
    """True if `exc` means Redis cannot be reached or cannot store (as opposed to a bug or a
    script error): a request then answers 503, a chat frame closes 1013."""
    return (
        isinstance(exc, DOWN + CANNOT_STORE)
        or isinstance(exc, ResponseError)
        and str(exc).startswith("MISCONF")
    )


def unavailable(
    method: Callable[P, Awaitable[R]],
) -> Callable[P, Awaitable[R]]:
    """Turn 'Redis cannot be reached or cannot store' into `SessionStoreUnavailable` (503 for
    the request)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except (*DOWN, RedisError) as exc:
            if not is_down(exc):
                raise
            # Not logged here: the caller (a handler's 503, the pruner) says what failed.
            raise SessionStoreUnavailable(
                f"Redis cannot be reached or cannot store ({exc.__class__.__name__})"
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


def channel_name(client: aioredis.Redis, prefix: str, name: str) -> str:
    """A pub/sub channel for this prefix and database number.

    Keys live in a numbered database but pub/sub channels are server-wide, so the number is
    part of the name: deployments (or test runs) on different databases never hear each other.
    """
    db = client.connection_pool.connection_kwargs.get("db", 0)
    return f"{prefix}db{db}:{name}"


def lua(*names: str) -> str:
    """The source of the `.lua` files `names` beside this module, joined in order."""
    return "".join(_lua_file(name) for name in names)


@functools.cache
def _lua_file(name: str) -> str:
    # Package data (setup.py package_data; scripts/build-binary adds it to the binary).
    return resources.files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


async def subscribe_forever(
    url: str,
    channel: str,
    on_data: Callable[[Any], None],
    subscribed: asyncio.Event,
    what: str,
    logger: logging.Logger = log,
) -> None:
    """Feed every message on a pub/sub channel to `on_data` until cancelled.

    `subscribed` is set while the subscription stands. A lost connection is logged (on
    `logger`, the caller's) as one line and retried with a back-off doubling to
    RESUBSCRIBE_MAX_DELAY, so plp recovers by itself when Redis comes back.
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
                    logger.info("%s restored", what)
                delay = 0.1
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        on_data(message.get("data"))
            except DOWN as exc:
                subscribed.clear()
                logger.warning(
                    "%s lost (%s); retrying in %.1f s", what, exc.__class__.__name__, delay
                )
            except Exception:
                subscribed.clear()
                logger.exception("%s failed; retrying in %.1f s", what, delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESUBSCRIBE_MAX_DELAY)
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
