"""`RedisBroker`: chat fan-out between plp processes over Redis pub/sub.

Every process publishes its hub events on one channel (`<prefix>db<N>:chat`) and subscribes to it.
The publishing process delivers to its own sockets at once (no round trip, and it keeps
working while the subscription reconnects) and skips its own events when they come back.

Ordering: `publish` only queues; one writer task sends the queue in order over a single
connection, so the other processes see one process's events in the order it made them.

Session ends need nothing here: the Redis session store already announces every ended
session to every process's end listeners, and the hub's listener closes local sockets, so
`end_session` is a local delivery.

Redis down: local delivery goes on; events for other processes are dropped (and counted in a
log line) rather than queued without bound. Messages are in the database already: a client
that reconnects reads them from history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

from ..sessions.base import SessionStoreUnavailable
from .sessions import DEFAULT_PREFIX, channel_name, connect, subscribe_forever
from ..chat.hub import Broker

log = logging.getLogger(__name__)

CHAT_CHANNEL = "chat"
QUEUE_LIMIT = 10_000
BATCH = 256
SUBSCRIBE_TIMEOUT = 3.0


def _is_down(exc: BaseException) -> bool:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)


class RedisBroker(Broker):
    """Hub events to and from every plp process sharing a Redis URL and prefix."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.origin = secrets.token_hex(8)
        self._client = connect(url)
        self.channel = channel_name(self._client, prefix, CHAT_CHANNEL)
        self._queue: asyncio.Queue[str] | None = None
        self._writer: asyncio.Task | None = None
        self._reader: asyncio.Task | None = None
        self._subscribed = asyncio.Event()
        self._dropped = 0
        self._closed = False

    # -- Broker ----------------------------------------------------------------------------

    def publish(self, channel_id: int, frame: str, exclude: str | None) -> None:
        self.hub.deliver(channel_id, frame, exclude)
        self._send("m", channel_id, exclude, frame)

    def channel_deleted(self, channel_id: int, frame: str) -> None:
        self.hub.drop_channel(channel_id, frame)
        self._send("d", channel_id, None, frame)

    def end_session(self, key: str) -> None:
        # Already heard in every process through the session store's end notices.
        self.hub.close_session(key)

    async def start(self) -> None:
        """Subscribe and wait until subscribed; SessionStoreUnavailable if Redis is down."""
        self._ensure_running()
        try:
            await asyncio.wait_for(self._subscribed.wait(), SUBSCRIBE_TIMEOUT)
        except TimeoutError as exc:
            raise SessionStoreUnavailable("cannot subscribe to chat events in Redis") from exc

    async def close(self) -> None:
        self._closed = True
        for task in (self._writer, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._writer = self._reader = None

    # -- publishing ------------------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._closed:
            return
        if self._queue is None:
            self._queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        if self._writer is None:
            self._writer = loop.create_task(self._write())
        if self._reader is None:
            self._reader = loop.create_task(self._read())

    def _send(self, kind: str, channel_id: int, exclude: str | None, frame: str) -> None:
        self._ensure_running()
        queue = self._queue
        if queue is None:
            return
        if queue.qsize() >= QUEUE_LIMIT:
            self._dropped += 1
            return
        # Header line, then the frame untouched: no second JSON encoding per event.
        queue.put_nowait(f"{self.origin} {kind} {channel_id} {exclude or '-'}\n{frame}")

    async def _write(self) -> None:
        assert self._queue is not None
        queue = self._queue
        client = self._client
        try:
            while True:
                batch = [await queue.get()]
                while len(batch) < BATCH and not queue.empty():
                    batch.append(queue.get_nowait())
                try:
                    async with client.pipeline(transaction=False) as pipe:
                        for item in batch:
                            pipe.publish(self.channel, item)
                        await pipe.execute()
                except Exception as exc:
                    if not _is_down(exc):
                        log.exception("chat broker publish failed")
                    self._dropped += len(batch)
                if self._dropped:
                    log.warning(
                        "Redis unavailable: %d chat events not sent to other processes",
                        self._dropped,
                    )
                    self._dropped = 0
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    # -- receiving -------------------------------------------------------------------------

    async def _read(self) -> None:
        await subscribe_forever(
            self.url, self.channel, self._receive, self._subscribed, "chat broker subscription"
        )

    def _receive(self, data: Any) -> None:
        try:
            header, frame = data.split("\n", 1)
            origin, kind, channel, exclude = header.split(" ")
            channel_id = int(channel)
        except (AttributeError, ValueError):
            log.warning("ignoring a malformed chat broker event")
            return
        if origin == self.origin:
            return
        if kind == "m":
            self.hub.deliver(channel_id, frame, None if exclude == "-" else exclude)
        elif kind == "d":
            self.hub.drop_channel(channel_id, frame)
