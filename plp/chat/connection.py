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

import logging
import math
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any, Protocol

from ..classes.visibility import sees_channel, still_member, visible_channel
from ..config import Settings
from ..errors import NotFound as Invisible
from ..sessions.base import Session, SessionStore, SessionStoreUnavailable, end_reason
from ..storage.base import Message, NotFound, StorageUnavailable, UnstorableValue, User
from ..storage.store import Store
from .frames import (
    CLIENT_ID_MAX,
    ID_MAX,
    REF_MAX,
    SURROGATE_RE,
    FrameError,
    channel_field,
    frame_ref,
    has_lone_surrogate,
    parse_frame,
    public_user,
    text_field,
)
from .hub import (
    CLOSE_POLICY,
    CLOSE_SESSION_ENDED,
    CLOSE_UNSUPPORTED,
    ChatHub,
    CloseFn,
    SendFn,
    Subscriber,
    dumps,
)
from .limits import RefusalWindow, TokenBucket

__all__ = ["ID_MAX", "ChatConnection", "FrameError", "public_user"]

log = logging.getLogger(__name__)

TYPING_INTERVAL = 1.0  # typing frames closer together than this are dropped silently
REFUSALS_LIMIT = 20  # more refused frames than this ...
REFUSALS_WINDOW = 10.0  # ... within this many seconds: close 1008
CLOSE_TRY_AGAIN = 1013  # the session store or database is unreachable: reconnect later


@lru_cache(maxsize=4096)
def hello_text(user: User) -> str:
    """The `hello` frame for one version of a user record (records are immutable and compare
    by value): its ISO date and JSON are made once per version, not at every connect."""
    return dumps({"type": "hello", "user": user.to_json()})


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
    def db(self) -> Store: ...

    @property
    def store(self) -> SessionStore: ...

    @property
    def hooks(self) -> MessageHooks: ...


class ChatConnection:
    """One signed-in chat socket after the upgrade: frames in, events out through the hub."""

    # Kept small: a server holds one per open socket, most of them idle.
    __slots__ = (
        "ctx",
        "hub",
        "sub",
        "bucket",
        "refusals",
        "last_typing",
        "kinds",
        "classes",
        "session",
    )

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
        self.classes: dict[int, int] = {}  # joined class channel -> its class
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
        self.hub.send_text(self.sub, hello_text(user))
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
        user = await self.fresh_user()  # an admin sees every class's channels
        if user is None:
            return
        ctx = self.ctx
        try:
            channel = await visible_channel(ctx, user, channel_id)
        except Invisible:
            # An invisible channel is answered exactly like an unknown one (SPEC §12).
            raise FrameError("not_found", "No such channel.", "join") from None
        sub = self.sub
        if not self.hub.connected(sub):
            return  # closed while the lookup ran
        self.kinds[channel_id] = channel.kind
        if channel.class_id is not None:
            self.classes[channel_id] = channel.class_id
        self.hub.join(sub, channel_id)
        # Everyone online, in every process (with session-backend redis a Redis round trip,
        # queued after this socket's own arrival: once `joined` is sent, every process
        # counts the user as online here).
        others = await self.hub.presence.others(channel_id, sub.user_id)
        if channel_id not in sub.channels:
            return  # left, closed or the channel deleted meanwhile
        if channel.class_id is not None and not await still_member(ctx, user, channel.class_id):
            # Removed from the class while joining: its notice found no subscription yet.
            self.revoked(channel_id)
            raise FrameError("not_found", "No such channel.", "join")
        self.send_event({"type": "joined", "channel": channel_id})
        for user in others:
            self.send_event(
                {"type": "presence", "channel": channel_id, "user": user, "status": "online"}
            )

    async def op_leave(self, data: dict[str, Any]) -> None:
        channel_id = channel_field(data, "leave")
        if not self.hub.leave(self.sub, channel_id):
            raise await self.unjoined(channel_id, "leave", "You have not joined that channel.")
        self.forget(channel_id)
        self.send_event({"type": "left", "channel": channel_id})

    async def op_typing(self, data: dict[str, Any]) -> None:
        channel_id = channel_field(data, "typing")
        sub = self.sub
        if channel_id not in sub.channels:
            raise await self.unjoined(channel_id, "typing", "You have not joined that channel.")
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
            raise await self.unjoined(channel_id, ref, "Join the channel before sending to it.")
        # Role and disabled state come from the user record at every message.
        user = await self.fresh_user()
        if user is None:
            return
        if not await still_member(self.ctx, user, self.classes.get(channel_id)):
            # Removed from the class a moment ago, its notice maybe still on the way.
            self.revoked(channel_id)
            raise FrameError("not_found", "No such channel.", ref)
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

    async def unjoined(self, channel_id: int, ref: str, message: str) -> FrameError:
        """The refusal of a frame naming a channel this socket has not joined: `not_found`
        when the channel does not exist or the user cannot see it, else `not_joined`."""
        user = await self.ctx.db.get_user(self.sub.user_id)
        if user is None or not await sees_channel(self.ctx, user, channel_id):
            return FrameError("not_found", "No such channel.", ref)
        return FrameError("not_joined", message, ref)

    def forget(self, channel_id: int) -> None:
        """Drop what this connection kept about a channel it left."""
        self.kinds.pop(channel_id, None)
        self.classes.pop(channel_id, None)

    def revoked(self, channel_id: int) -> None:
        """Leave a channel the user may no longer see and say so (`channel_removed`)."""
        if self.hub.leave(self.sub, channel_id):
            self.send_event({"type": "channel_removed", "channel": channel_id})
        self.forget(channel_id)

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
