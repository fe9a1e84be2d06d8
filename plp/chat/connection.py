"""One chat connection's protocol (docs/protocol.md, SPEC §8), without Tornado.

`ChatConnection` takes the text of each client frame, checks it (a flat JSON object, no lone
surrogates, a known type), applies the role, rate and typing rules, stores messages through
the database, publishes through the hub and answers through the hub. It sees the socket only
as a `send(frame)` and a `close(code, reason)` callable, so the WebSocket handler
(plp/handlers/chat.py) keeps the handshake and the writes, and tests or a benchmark can drive
a connection without a socket (the split of jupyter_server's kernel `websocket.py` and
`connection/`). Of the process's Context it uses only what `ChatContext` names.

Refused frames are answered with an `error` frame and counted: more than REFUSALS_LIMIT
within REFUSALS_WINDOW seconds closes the socket with 1008. A session store or database that
cannot be reached closes it with 1013 (try again later): nothing was stored or acknowledged,
so the client resends after reconnecting.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..config import Settings
from ..sessions.base import Session, SessionStore, SessionStoreUnavailable, end_reason
from ..storage.base import Database, Message, NotFound, StorageUnavailable, UnstorableValue, User
from .hub import (
    CLOSE_POLICY,
    CLOSE_SESSION_ENDED,
    CLOSE_UNSUPPORTED,
    ChatHub,
    CloseFn,
    SendFn,
    Subscriber,
)
from .limits import RefusalWindow, TokenBucket

log = logging.getLogger(__name__)

ID_MAX = 2**63 - 1  # the largest id a 64-bit signed column holds
TEXT_MAX = 2000
CLIENT_ID_MAX = 64
REF_MAX = 64
TYPING_INTERVAL = 1.0  # typing frames closer together than this are dropped silently
REFUSALS_LIMIT = 20  # more refused frames than this ...
REFUSALS_WINDOW = 10.0  # ... within this many seconds: close 1008
CLOSE_TRY_AGAIN = 1013  # the session store or database is unreachable: reconnect later
# NUL cannot be stored by PostgreSQL and lone surrogates cannot be encoded as UTF-8.
UNSTORABLE_RE = re.compile(r"[\x00\ud800-\udfff]")
SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


class MessageHooks(Protocol):
    """The listener call a connection makes once a message is committed (plp/context.py)."""

    def message_stored(self, message: Message) -> None: ...


class ChatContext(Protocol):
    """What a chat connection uses of the process's Context (plp/context.py)."""

    settings: Settings  # chat_rate
    clock: Callable[[], float]

    @property
    def hub(self) -> ChatHub: ...

    @property
    def db(self) -> Database: ...

    @property
    def store(self) -> SessionStore: ...

    @property
    def hooks(self) -> MessageHooks: ...


class FrameError(Exception):
    """A client frame refused with an `error` frame (code, message, ref)."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


def public_user(user: User) -> dict[str, Any]:
    """The fields other chat users see: {id, username, displayName, role}."""
    return {
        "id": user.id,
        "username": user.username,
        "displayName": user.display_name,
        "role": user.role,
    }


def parse_frame(message: str) -> dict[str, Any]:
    """A client frame as a flat JSON object, or FrameError `bad_request` (SPEC §8).

    Every frame of the protocol is one object whose values are strings, numbers, booleans or
    null; nested values are refused before anything looks at them (which also keeps `[[[...`
    from reaching the recursion limit anywhere later).
    """
    try:
        data = json.loads(message)
    except (ValueError, RecursionError):
        raise FrameError("bad_request", "Frames must be JSON objects.") from None
    if not isinstance(data, dict):
        raise FrameError("bad_request", "Frames must be JSON objects.")
    if any(isinstance(value, (dict, list)) for value in data.values()):
        raise FrameError("bad_request", "Frame fields must be strings, numbers, booleans or null.")
    return data


def has_lone_surrogate(message: str, data: dict[str, Any]) -> bool:
    """True if any key or string of the frame holds a lone surrogate (`"\\ud800"`).

    Such a string parses, but can be neither stored, published nor echoed as UTF-8. Tornado
    decodes text frames as strict UTF-8, so only a `\\u` escape can make one.
    """
    return "\\u" in message and any(
        isinstance(text, str) and SURROGATE_RE.search(text) is not None
        for text in (*data.keys(), *data.values())
    )


def frame_ref(data: dict[str, Any], kind: str) -> str:
    """The `ref` of an error about a frame: a send's valid clientId, else its type."""
    client_id = data.get("clientId")
    if (
        kind == "send"
        and isinstance(client_id, str)
        and len(client_id) <= CLIENT_ID_MAX
        and not SURROGATE_RE.search(client_id)
    ):
        return client_id
    return kind


def channel_field(data: dict[str, Any], ref: str | None) -> int:
    """The frame's `channel` as an id, or FrameError `bad_request`."""
    value = data.get("channel")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= ID_MAX:
        raise FrameError("bad_request", "`channel` must be a channel id (a positive integer).", ref)
    return value


def text_field(data: dict[str, Any], ref: str) -> str:
    """A send's `text`, stripped and checked for length and storability; or FrameError."""
    text = data.get("text")
    if not isinstance(text, str):
        raise FrameError("bad_request", "`text` must be a string.", ref)
    text = text.strip()
    if not text:
        raise FrameError("bad_request", "The message is empty.", ref)
    if len(text) > TEXT_MAX:
        raise FrameError("too_long", f"Messages are at most {TEXT_MAX} characters.", ref)
    if UNSTORABLE_RE.search(text):
        raise FrameError(
            "bad_request", "The message contains characters that cannot be stored.", ref
        )
    return text


class ChatConnection:
    """One signed-in chat socket after the upgrade: frames in, events out through the hub."""

    # Kept small: a server holds one per open socket, most of them idle.
    __slots__ = ("ctx", "hub", "sub", "bucket", "refusals", "last_typing", "kinds", "session")

    def __init__(
        self,
        ctx: ChatContext,
        *,
        conn_id: str,
        user: User,
        session: Session,
        address: str,
        send: SendFn,
        close: CloseFn,
    ) -> None:
        self.ctx = ctx
        self.hub = ctx.hub
        self.sub = Subscriber(
            conn_id=conn_id,
            session_key=session.key,
            user_id=user.id,
            user=public_user(user),
            address=address,
            send=send,
            close=close,
        )
        rate, period = ctx.settings.chat_rate
        self.bucket = TokenBucket(rate, period, ctx.clock())
        self.refusals = RefusalWindow(REFUSALS_LIMIT, REFUSALS_WINDOW)
        self.last_typing = -math.inf
        self.kinds: dict[int, str] = {}  # joined channel -> its kind
        self.session = session  # as last looked up: every frame looks it up again

    # ------------------------------------------------------------------- lifecycle
    async def connect(self, user: User) -> bool:
        """Register with the hub and say hello; False (and closed 4001) if the session ended."""
        self.hub.add(self.sub)
        # The session may have ended while the handshake was awaiting (shared stores); the
        # end listener now sees this connection, and this lookup catches an end that came
        # before.
        if await self.ctx.store.get_by_key(self.sub.session_key) is None:
            self.hub.drop(self.sub, CLOSE_SESSION_ENDED, "session ended")
            return False
        self.send_event({"type": "hello", "user": user.to_json()})
        return True

    def disconnect(self) -> None:
        """The socket is over (or being closed): leave every channel and the hub."""
        self.hub.remove(self.sub)

    def send_event(self, event: dict[str, Any]) -> None:
        """One event to this connection only."""
        self.hub.send_to(self.sub, event)

    # ------------------------------------------------------------------- input
    async def handle_incoming_message(self, message: str | bytes) -> None:
        """Act on one client frame; refusals are answered, never raised."""
        if isinstance(message, bytes):
            self.hub.drop(self.sub, CLOSE_UNSUPPORTED, "binary frames are not accepted")
            return
        if self.hub.closing:
            return  # shutting down: not acknowledged, the client resends after reconnecting
        try:
            await self.handle(message)
        except FrameError as exc:
            self.refuse(exc)
        except UnstorableValue:
            self.refuse(FrameError("bad_request", "The frame holds text that cannot be stored."))
        except (SessionStoreUnavailable, StorageUnavailable) as exc:
            # Nothing was stored or acknowledged; the client reconnects with back-off and
            # resends. The cause (Redis down, disk full, ...) goes in the one log line.
            log.warning("chat frame refused, closing with 1013: %s", exc)
            self.hub.drop(self.sub, CLOSE_TRY_AGAIN, "service unavailable, try again")

    async def handle(self, message: str) -> None:
        """Check one text frame and run its operation; FrameError if it is refused."""
        data = parse_frame(message)
        kind = data.get("type")
        if not isinstance(kind, str):
            raise FrameError("bad_request", "`type` must be a string.")
        if SURROGATE_RE.search(kind):
            raise FrameError("bad_request", "`type` holds a lone surrogate.")
        op = self.OPS.get(kind)
        if op is None:
            raise FrameError("bad_request", "Unknown frame type.", kind[:REF_MAX])
        if has_lone_surrogate(message, data):
            raise FrameError(
                "bad_request", "The frame holds a lone surrogate.", frame_ref(data, kind)
            )
        # Every frame re-checks the session, so an expired one is refused at once.
        session = await self.ctx.store.get_by_key(self.sub.session_key)
        if session is None:
            self.hub.drop(self.sub, CLOSE_SESSION_ENDED, "session ended")
            return
        self.session = session
        await op(self, data)

    def refuse(self, exc: FrameError) -> None:
        """Answer a refused frame; too many refusals close the socket with 1008."""
        event: dict[str, Any] = {"type": "error", "code": exc.code, "message": exc.message}
        if exc.ref is not None:
            event["ref"] = exc.ref
        self.send_event(event)
        if self.refusals.add(self.ctx.clock()):
            self.hub.drop(self.sub, CLOSE_POLICY, "too many refused frames")

    # ------------------------------------------------------------------- operations
    async def op_ping(self, data: dict[str, Any]) -> None:
        self.send_event({"type": "pong"})

    async def op_join(self, data: dict[str, Any]) -> None:
        channel_id = channel_field(data, "join")
        channel = await self.ctx.db.get_channel(channel_id)
        if channel is None:
            raise FrameError("not_found", "No such channel.", "join")
        sub = self.sub
        if not self.hub.connected(sub):
            return  # closed while the lookup ran
        self.kinds[channel_id] = channel.kind
        self.hub.join(sub, channel_id)
        # Everyone online, in every process (with session-backend redis a Redis round trip,
        # queued after this socket's own arrival: once `joined` is sent, every process
        # counts the user as online here).
        others = await self.hub.presence.others(channel_id, sub.user_id)
        if channel_id not in sub.channels:
            return  # left, closed or the channel deleted meanwhile
        self.send_event({"type": "joined", "channel": channel_id})
        for user in others:
            self.send_event(
                {"type": "presence", "channel": channel_id, "user": user, "status": "online"}
            )

    async def op_leave(self, data: dict[str, Any]) -> None:
        channel_id = channel_field(data, "leave")
        if not self.hub.leave(self.sub, channel_id):
            raise FrameError("not_joined", "You have not joined that channel.", "leave")
        self.kinds.pop(channel_id, None)
        self.send_event({"type": "left", "channel": channel_id})

    async def op_typing(self, data: dict[str, Any]) -> None:
        channel_id = channel_field(data, "typing")
        sub = self.sub
        if channel_id not in sub.channels:
            raise FrameError("not_joined", "You have not joined that channel.", "typing")
        now = self.ctx.clock()
        if now - self.last_typing < TYPING_INTERVAL and now >= self.last_typing:
            return  # more than one a second: dropped silently
        self.last_typing = now
        if self.kinds.get(channel_id) == "announcement":
            # Only those who may post there may be seen typing (SPEC §8); the role is read
            # from the user record, as for a send.
            user = await self.fresh_user()
            if user is None or user.role == "student":
                return
        self.hub.publish(
            channel_id,
            {"type": "typing", "channel": channel_id, "user": sub.user},
            exclude=sub.conn_id,
        )

    async def op_send(self, data: dict[str, Any]) -> None:
        client_id = data.get("clientId")
        if client_id is not None and (
            not isinstance(client_id, str) or len(client_id) > CLIENT_ID_MAX
        ):
            raise FrameError("bad_request", "`clientId` must be a string of at most 64.", "send")
        ref = client_id if client_id is not None else "send"
        channel_id = channel_field(data, ref)
        text = text_field(data, ref)
        if channel_id not in self.sub.channels:
            raise FrameError("not_joined", "Join the channel before sending to it.", ref)
        # Role and disabled state come from the user record at every message.
        user = await self.fresh_user()
        if user is None:
            return
        if self.kinds.get(channel_id) == "announcement" and user.role == "student":
            raise FrameError("forbidden", "Only teachers and admins post here.", ref)
        if not self.bucket.take(self.ctx.clock()):
            raise FrameError("rate_limited", "You are sending too fast; wait a moment.", ref)
        self.hub.begin()
        try:
            await self.store_and_publish(channel_id, user, text, client_id, ref)
        finally:
            self.hub.end()

    async def store_and_publish(
        self, channel_id: int, user: User, text: str, client_id: str | None, ref: str
    ) -> None:
        """Commit a message, then show it to the channel and echo it to the sender."""
        ctx = self.ctx
        await ctx.store.touch(self.session)  # a chat message is activity
        try:
            stored = await ctx.db.add_message(channel_id, user, text)
        except NotFound:
            raise FrameError("not_found", "That channel no longer exists.", ref) from None
        ctx.hooks.message_stored(stored)
        # Committed: only now does anyone, the sender included, see the message.
        event: dict[str, Any] = {
            "type": "message",
            "channel": channel_id,
            "message": stored.to_json(),
        }
        self.hub.publish(channel_id, event, exclude=self.sub.conn_id)
        if client_id is not None:
            event["clientId"] = client_id
        self.send_event(event)

    async def fresh_user(self) -> User | None:
        """The user record as it is now; None (and the socket closed 4001) if disabled or
        its sessions were cut off."""
        sub = self.sub
        ctx = self.ctx
        user = await ctx.db.get_user(sub.user_id)
        reason = end_reason(self.session, user)
        if reason is not None or user is None:  # (None has a reason; this narrows the type)
            await ctx.store.end(sub.session_key, reason or "disabled")
            self.hub.drop(sub, CLOSE_SESSION_ENDED, "session ended")
            return None
        sub.user = public_user(user)
        return user

    OPS: dict[str, Callable[[ChatConnection, dict[str, Any]], Awaitable[None]]] = {
        "ping": op_ping,
        "join": op_join,
        "leave": op_leave,
        "typing": op_typing,
        "send": op_send,
    }
