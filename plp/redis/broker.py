"""`RedisBroker`: chat fan-out between plp processes over Redis pub/sub.

Every process publishes its hub events on one channel (`<prefix>db<N>:chat`) and subscribes to it.
The format of an event on that channel is defined here only (`encode_event`, `decode_event`,
`event_pattern` for the Lua scripts of plp/redis/node.py that publish presence themselves).
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

from ..chat.broker import Broker
from ..sessions.base import SessionStoreUnavailable
from .client import DEFAULT_PREFIX, channel_name, connect, is_down, subscribe_forever

log = logging.getLogger(__name__)

CHAT_CHANNEL = "chat"
QUEUE_LIMIT = 10_000
BATCH = 256
SUBSCRIBE_TIMEOUT = 3.0

# -- wire format -----------------------------------------------------------------------------
# One event: a header line `<origin> <kind> <channel id> <excluded connection or NOBODY>`,
# then the frame untouched (no second JSON encoding per event).
MESSAGE = "m"  # deliver the frame to the channel's subscribers
DELETED = "d"  # the channel was deleted: deliver the frame, then drop its subscribers
REVOKED = "r"  # a user lost the channel: the fourth header field is that user's id
NOBODY = "-"  # no connection is excluded from the delivery


def encode_event(
    origin: str, kind: str, channel_id: int | str, exclude: str | None, frame: str
) -> str:
    """One event as published on the chat channel."""
    return f"{origin} {kind} {channel_id} {exclude or NOBODY}\n{frame}"


def event_pattern(origin: str, kind: str) -> str:
    """`encode_event` as a Lua `string.format` pattern of (channel id, exclude, frame).

    For scripts that publish events themselves; `origin` and `kind` must not contain `%`.
    """
    return encode_event(origin, kind, "%s", "%s", "%s")


def decode_event(data: Any) -> tuple[str, str, int, str | None, str]:
    """(origin, kind, channel id, excluded connection or None, frame); ValueError if malformed."""
    if not isinstance(data, str):
        raise ValueError("not a text event")
    header, frame = data.split("\n", 1)
    origin, kind, channel, exclude = header.split(" ")
    return origin, kind, int(channel), None if exclude == NOBODY else exclude, frame


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
        self._send(MESSAGE, channel_id, exclude, frame)

    def channel_deleted(self, channel_id: int, frame: str) -> None:
        self.hub.drop_channel(channel_id, frame)
        self._send(DELETED, channel_id, None, frame)

    def revoke(self, channel_id: int, user_id: int, frame: str) -> None:
        self.hub.drop_member(channel_id, user_id, frame)
        self._send(REVOKED, channel_id, str(user_id), frame)

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
        queue.put_nowait(encode_event(self.origin, kind, channel_id, exclude, frame))

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
                    if not is_down(exc):
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
            self.url,
            self.channel,
            self._receive,
            self._subscribed,
            "chat broker subscription",
            log,
        )

    def _receive(self, data: Any) -> None:
        try:
            origin, kind, channel_id, exclude, frame = decode_event(data)
        except ValueError:
            log.warning("ignoring a malformed chat broker event")
            return
        if origin == self.origin:
            return
        if kind == MESSAGE:
            self.hub.deliver(channel_id, frame, exclude)
        elif kind == DELETED:
            self.hub.drop_channel(channel_id, frame)
        elif kind == REVOKED and exclude is not None and exclude.isdigit():
            self.hub.drop_member(channel_id, int(exclude), frame)
