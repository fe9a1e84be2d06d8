"""The chat hub: channels' subscribers, presence, fan-out and session-end closing.

No Tornado in here: a subscriber is a small record with a `send(frame)` callable and a
`close(code, reason)` callable, so the hub can be driven by WebSocket handlers, tests or a
benchmark alike. Every event is serialized to JSON once (and, when the hub has a `wire`
encoder, encoded to its wire form once) and the same object is handed to every subscriber.

Fan-out never awaits a subscriber: `send` must only queue the frame. A subscriber whose
`send` returns False (its pending write buffer is over the bound) or raises is dropped from
the hub and closed with 1008, so one slow client cannot hold up or bloat the others.

Events cross process boundaries only through a `Broker`: `LocalBroker` delivers in this
process; a shared broker (Redis pub/sub) can replace it without touching the handlers.
Likewise the socket caps (`SocketCounter`) and who is online in a channel (`Presence`) are
behind small interfaces. The seams and their in-process versions live in broker.py,
sockets.py and presence.py beside this module; the Redis ones in plp/redis/.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

from .broker import Broker, LocalBroker
from .presence import LocalPresence, Presence
from .sockets import MemorySocketCounter, SocketCounter

log = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_SESSION_ENDED = 4001

SHUTDOWN_GRACE = 5.0  # seconds to let in-flight sends commit before closing with 1001

SendFn = Callable[[Any], Any]
CloseFn = Callable[[int, str], None]


def dumps(event: dict[str, Any]) -> str:
    """Compact JSON for one event; non-ASCII text stays as UTF-8 (smaller than \\u escapes)."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def removed_frame(channel_id: int) -> str:
    """The `channel_removed` frame: this socket may no longer use the channel."""
    return dumps({"type": "channel_removed", "channel": channel_id})


class Subscriber:
    """One connection as the hub sees it.

    `send(frame)` queues a frame without blocking and returns False when the connection
    cannot keep up; `close(code, reason)` starts closing the connection.
    """

    __slots__ = (
        "conn_id",
        "session_key",
        "user_id",
        "user",
        "address",
        "send",
        "close",
        "channels",
    )

    def __init__(
        self,
        *,
        conn_id: str,
        session_key: str,
        user_id: int,
        user: dict[str, Any],
        address: str,
        send: SendFn,
        close: CloseFn,
    ) -> None:
        self.conn_id = conn_id
        self.session_key = session_key
        self.user_id = user_id
        self.user = user  # public fields: {id, username, displayName, role}
        self.address = address
        self.send = send
        self.close = close
        self.channels: set[int] = set()


class ChatHub:
    """Subscribers by channel, session and user; presence counts; fan-out; shutdown."""

    def __init__(
        self,
        broker: Broker | None = None,
        *,
        wire: Callable[[str], Any] | None = None,
        presence: Presence | None = None,
        sockets: SocketCounter | None = None,
    ) -> None:
        self.broker = broker or LocalBroker()
        self.broker.bind(self)
        self.presence = presence or LocalPresence()
        self.presence.bind(self)
        self.sockets = sockets or MemorySocketCounter()
        # Encodes a JSON frame once per fan-out into what subscribers' `send` takes.
        self.wire = wire
        self._prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)
        self._channels: dict[int, set[Subscriber]] = {}
        # channel -> user id -> how many of the user's connections here are in it
        self._present: dict[int, dict[int, int]] = {}
        self._by_session: dict[str, set[Subscriber]] = {}
        self._by_user: dict[int, int] = {}  # informational; admission is `sockets`
        self._all: set[Subscriber] = set()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.closing = False

    # connections
    def new_conn_id(self) -> str:
        """A connection id unique across processes (used to skip the sender in fan-out)."""
        return f"{self._prefix}-{next(self._ids)}"

    async def admit(
        self, conn_id: str, user_id: int, address: str, per_user: int, per_address: int
    ) -> str | None:
        """Take a socket slot for `conn_id`, or say why not ('shutdown', 'user', 'address').

        A slot taken here must be given back with `release(conn_id)` however the socket ends.
        """
        if self.closing:
            return "shutdown"
        why = await self.sockets.acquire(conn_id, user_id, address, per_user, per_address)
        if why is not None:
            return why
        if self.closing:  # shutdown began while the counter was asked
            self.sockets.release(conn_id)
            return "shutdown"
        return None

    def release(self, conn_id: str) -> None:
        """Give back a socket slot taken by `admit` (harmless if already given back)."""
        self.sockets.release(conn_id)

    def add(self, sub: Subscriber) -> None:
        """Register a connection (no channels yet)."""
        self._all.add(sub)
        self._by_session.setdefault(sub.session_key, set()).add(sub)
        self._by_user[sub.user_id] = self._by_user.get(sub.user_id, 0) + 1

    def remove(self, sub: Subscriber) -> None:
        """Forget a connection: leave its channels (presence offline) and free its slots."""
        if sub not in self._all:
            return
        self._all.discard(sub)
        for channel_id in list(sub.channels):
            self.leave(sub, channel_id)
        mine = self._by_session.get(sub.session_key)
        if mine is not None:
            mine.discard(sub)
            if not mine:
                del self._by_session[sub.session_key]
        left = self._by_user.get(sub.user_id, 0) - 1
        if left > 0:
            self._by_user[sub.user_id] = left
        else:
            self._by_user.pop(sub.user_id, None)
        self.sockets.release(sub.conn_id)

    def connected(self, sub: Subscriber) -> bool:
        """Whether the subscriber is still registered (not closed or dropped)."""
        return sub in self._all

    def sockets_of_user(self, user_id: int) -> int:
        """How many connections the user has in this process."""
        return self._by_user.get(user_id, 0)

    def count(self) -> int:
        """Open connections in this process."""
        return len(self._all)

    # channels and presence
    def join(self, sub: Subscriber, channel_id: int) -> list[dict[str, Any]]:
        """Subscribe; announce the user online if new here; return the others online."""
        if channel_id in sub.channels:
            return self.online(channel_id, exclude_user=sub.user_id)
        sub.channels.add(channel_id)
        self._channels.setdefault(channel_id, set()).add(sub)
        present = self._present.setdefault(channel_id, {})
        count = present.get(sub.user_id, 0)
        present[sub.user_id] = count + 1
        if count == 0:
            self.presence.arrived(channel_id, sub.user, sub.conn_id)
        return self.online(channel_id, exclude_user=sub.user_id)

    def leave(self, sub: Subscriber, channel_id: int) -> bool:
        """Unsubscribe; announce the user offline when this was their last connection in it."""
        if channel_id not in sub.channels:
            return False
        sub.channels.discard(channel_id)
        subs = self._channels.get(channel_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._channels[channel_id]
        present = self._present.get(channel_id, {})
        count = present.get(sub.user_id, 0) - 1
        if count > 0:
            present[sub.user_id] = count
            return True
        present.pop(sub.user_id, None)
        if not present:
            self._present.pop(channel_id, None)
        self.presence.departed(channel_id, sub.user)
        return True

    def online(self, channel_id: int, *, exclude_user: int | None = None) -> list[dict[str, Any]]:
        """The users with a connection in the channel in this process, one entry each.

        Across processes ask `presence.others` instead.
        """
        seen: dict[int, dict[str, Any]] = {}
        for sub in self._channels.get(channel_id, ()):
            if sub.user_id != exclude_user and sub.user_id not in seen:
                seen[sub.user_id] = sub.user
        return list(seen.values())

    def present_users(self) -> dict[int, list[dict[str, Any]]]:
        """Channel -> the users with a connection in it in this process (one entry each)."""
        out: dict[int, list[dict[str, Any]]] = {}
        for channel_id, subs in self._channels.items():
            seen: dict[int, dict[str, Any]] = {}
            for sub in subs:
                seen.setdefault(sub.user_id, sub.user)
            out[channel_id] = list(seen.values())
        return out

    def members(self, channel_id: int) -> int:
        """Connections subscribed to the channel in this process."""
        return len(self._channels.get(channel_id, ()))

    # fan-out
    def publish(
        self, channel_id: int, event: dict[str, Any], *, exclude: str | None = None
    ) -> None:
        """Send an event to everyone in the channel (but connection `exclude`), via the broker."""
        self.broker.publish(channel_id, dumps(event), exclude)

    def deliver(self, channel_id: int, frame: str, exclude: str | None = None) -> int:
        """Hand one serialized frame to this process's subscribers of a channel; return count."""
        subs = self._channels.get(channel_id)
        if not subs:
            return 0
        payload = self.wire(frame) if self.wire is not None else frame
        dropped: list[Subscriber] = []
        sent = 0
        # A snapshot: a send may close its connection, which must not resize the set mid-loop.
        for sub in tuple(subs):
            if sub.conn_id == exclude:
                continue
            try:
                ok = sub.send(payload)
            except Exception:
                log.debug("dropping subscriber %s after a failed send", sub.conn_id, exc_info=True)
                ok = False
            if ok is False:
                dropped.append(sub)
            else:
                sent += 1
        for sub in dropped:
            self.drop(sub, CLOSE_POLICY, "too slow")
        return sent

    def send_to(self, sub: Subscriber, event: dict[str, Any]) -> bool:
        """Send one event to one subscriber; False (and the subscriber dropped) if it failed."""
        return self.send_text(sub, dumps(event))

    def send_text(self, sub: Subscriber, frame: str) -> bool:
        """`send_to` for an event already serialised with `dumps`."""
        try:
            ok = sub.send(self.wire(frame) if self.wire is not None else frame)
        except Exception:
            ok = False
        if ok is False:
            self.drop(sub, CLOSE_POLICY, "too slow")
            return False
        return True

    def drop(self, sub: Subscriber, code: int, reason: str) -> None:
        """Remove a subscriber and close its connection."""
        self.remove(sub)
        try:
            sub.close(code, reason)
        except Exception:
            log.debug("closing subscriber %s failed", sub.conn_id, exc_info=True)

    def message_deleted(self, channel_id: int, message_id: int) -> None:
        """Tell the channel's subscribers, in every process, that a message is gone."""
        self.publish(
            channel_id, {"type": "message_deleted", "channel": channel_id, "message": message_id}
        )

    # channel deletion and session end, through the broker
    def channel_deleted(self, channel_id: int) -> None:
        """Tell every subscriber the channel is gone and unsubscribe them, in every process."""
        self.broker.channel_deleted(
            channel_id, dumps({"type": "channel_deleted", "channel": channel_id})
        )

    def drop_channel(self, channel_id: int, frame: str) -> None:
        """This process's part of a channel deletion (no presence: the channel is gone).

        Subscribers get the `channel_deleted` frame, then `channel_removed` (SPEC §12: every
        socket that had joined a channel it can no longer use hears `channel_removed`).
        """
        self.deliver(channel_id, frame)
        self.deliver(channel_id, removed_frame(channel_id))
        users: dict[int, dict[str, Any]] = {}
        for sub in self._channels.pop(channel_id, ()):
            sub.channels.discard(channel_id)
            users[sub.user_id] = sub.user
        self._present.pop(channel_id, None)
        for user in users.values():
            # Nobody is left to tell; a shared presence still forgets this process's entries.
            self.presence.departed(channel_id, user, announce=False)

    def revoke(self, channel_id: int, user_id: int) -> None:
        """The user may no longer see the channel (left or removed from its class): in every
        process, each of their sockets joined to it gets `channel_removed` and leaves it,
        announcing them offline to the others."""
        self.broker.revoke(channel_id, user_id, removed_frame(channel_id))

    def drop_member(self, channel_id: int, user_id: int, frame: str) -> int:
        """This process's part of `revoke`; how many sockets left the channel."""
        subs = [sub for sub in self._channels.get(channel_id, ()) if sub.user_id == user_id]
        payload = self.wire(frame) if self.wire is not None else frame
        for sub in subs:
            # Unsubscribed first, so a frame racing the notice already meets `not_found`.
            self.leave(sub, channel_id)
            try:
                ok = sub.send(payload)
            except Exception:
                ok = False
            if ok is False:
                self.drop(sub, CLOSE_POLICY, "too slow")
        return len(subs)

    def session_ended(self, key: str, user_id: int, reason: str) -> None:
        """A SessionStore end listener: close that session's sockets everywhere with 4001."""
        self.broker.end_session(key)

    def close_session(self, key: str) -> int:
        """Close this process's sockets of session `key` with 4001; return how many."""
        subs = self._by_session.get(key)
        if not subs:
            return 0
        closing = list(subs)
        for sub in closing:
            self.drop(sub, CLOSE_SESSION_ENDED, "session ended")
        return len(closing)

    # in-flight work and shutdown
    def begin(self) -> None:
        """A send started (its message is not committed yet); shutdown waits for it."""
        self._in_flight += 1
        self._idle.clear()

    def end(self) -> None:
        """A send finished (committed and fanned out, or refused)."""
        self._in_flight -= 1
        if self._in_flight <= 0:
            self._in_flight = 0
            self._idle.set()

    async def shutdown(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Refuse new sockets, let in-flight sends commit, then close every socket with 1001."""
        self.closing = True
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            log.warning("%d chat sends still running after %.0f s", self._in_flight, grace)
        for sub in list(self._all):
            self.drop(sub, CLOSE_GOING_AWAY, "server shutting down")
        # Presence first: withdrawing this process's users announces them offline elsewhere.
        await self.presence.close()
        await self.sockets.close()
        await self.broker.close()

    async def start(self) -> None:
        """Connect the shared parts (broker, presence, socket counter) before serving."""
        await self.broker.start()
        await self.presence.start()
        await self.sockets.start()

    async def close(self) -> None:
        """Release the shared parts without the shutdown sequence; safe after `shutdown`."""
        await self.presence.close()
        await self.sockets.close()
        await self.broker.close()
