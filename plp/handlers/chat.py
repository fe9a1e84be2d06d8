"""Chat: the /chat page, the channel API and the /ws/chat WebSocket (protocol: docs/protocol.md).

The socket handler authenticates with the same session code as every HTTP handler, in
`prepare()`, and refuses in `get()` (401 no session, 403 foreign Origin, 429 over the socket
caps) before `super().get()` upgrades, so a refused client never gets a WebSocket at all.
After the upgrade each frame is parsed here and handed to the hub; the hub only sees a
`send` callable that queues ready-made frame bytes on the connection's stream.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

import tornado.websocket
from tornado.httputil import HTTPHeaders
from tornado.ioloop import IOLoop
from tornado.iostream import StreamBufferFullError, StreamClosedError

from ..auth.decorators import authenticated, require_role
from ..chat.hub import (
    CLOSE_POLICY,
    CLOSE_SESSION_ENDED,
    CLOSE_UNSUPPORTED,
    ChatHub,
    Subscriber,
    dumps,
)
from ..chat.limits import RefusalWindow, TokenBucket
from ..chat.wire import text_frame
from ..errors import ApiError
from ..security import origin_allowed
from ..sessions.base import END_DISABLED, SessionStoreUnavailable
from ..storage.base import (
    CHANNEL_KINDS,
    ChannelNameTaken,
    NotFound,
    StorageUnavailable,
    UnstorableValue,
    User,
)
from .api import parse_id
from .base import ApiHandler
from .pages import PageHandler

log = logging.getLogger(__name__)

# Channel names: lower-cased, 1-64 of a-z 0-9 _ -, starting with a letter or digit.
CHANNEL_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
DESCRIPTION_MAX = 256
HISTORY_DEFAULT = 50
HISTORY_MAX = 100
ID_MAX = 2**63 - 1

TEXT_MAX = 2000
CLIENT_ID_MAX = 64
REF_MAX = 64
TYPING_INTERVAL = 1.0  # typing frames closer together than this are dropped silently
REFUSALS_LIMIT = 20  # more refused frames than this ...
REFUSALS_WINDOW = 10.0  # ... within this many seconds: close 1008
PENDING_MAX = 1024 * 1024  # a socket with more queued output than this is too slow: 1008
SILENCE_DEFAULT = 60.0  # a peer heard nothing from for this long is dropped
CLOSE_TRY_AGAIN = 1013  # the session store or database is unreachable: reconnect later
# NUL cannot be stored by PostgreSQL and lone surrogates cannot be encoded as UTF-8.
UNSTORABLE_RE = re.compile(r"[\x00\ud800-\udfff]")
SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


def public_user(user: User) -> dict[str, Any]:
    """The fields other chat users see: {id, username, displayName, role}."""
    return {
        "id": user.id,
        "username": user.username,
        "displayName": user.display_name,
        "role": user.role,
    }


def _query_int(handler: ApiHandler, name: str, low: int, high: int) -> int | None:
    """An optional integer query argument within [low, high]; 400 naming it otherwise."""
    raw = handler.get_query_argument(name, None)
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not low <= int(raw) <= high:
        problem = f"Must be a whole number from {low} to {high}."
        raise ApiError(400, "bad_request", f"Query {name}: {problem}", fields={name: problem})
    return int(raw)


# ---------------------------------------------------------------------------------- API


class ChannelsHandler(ApiHandler):
    """GET /api/channels (signed in); POST /api/channels (teacher, admin)."""

    is_api = True

    @authenticated
    async def get(self) -> None:
        channels = await self.ctx.db.list_channels()
        self.write_json({"channels": [c.to_json() for c in channels]})

    @require_role("teacher", "admin")
    async def post(self) -> None:
        data = self.get_json_body()
        name, description, kind = self.validate(data)
        try:
            channel = await self.ctx.db.create_channel(name, description, kind, self.user.id)
        except ChannelNameTaken:
            raise ApiError(
                409, "conflict", "A channel with that name exists.", fields={"name": "Taken."}
            ) from None
        log.info("channel %s (%d) created by user %d", channel.name, channel.id, self.user.id)
        self.write_json({"channel": channel.to_json()}, status=201)

    @staticmethod
    def validate(data: dict[str, Any]) -> tuple[str, str, str]:
        """(name, description, kind) from a create body, or a 400 naming every bad field."""
        problems: dict[str, str] = {}
        name = data.get("name")
        if not isinstance(name, str):
            problems["name"] = "This field is required and must be a string."
        else:
            name = name.strip().lower()
            if not CHANNEL_NAME_RE.fullmatch(name):
                problems["name"] = (
                    "1-64 characters: a-z, 0-9, '_' and '-', starting with a letter or digit."
                )
        description = data.get("description", "")
        if description is None:
            description = ""
        if not isinstance(description, str):
            problems["description"] = "Must be a string."
        else:
            description = description.strip()
            if len(description) > DESCRIPTION_MAX or not description.isprintable():
                problems["description"] = (
                    f"At most {DESCRIPTION_MAX} printable characters on one line."
                )
        kind = data.get("kind", "discussion")
        if kind is None:
            kind = "discussion"
        if kind not in CHANNEL_KINDS:
            problems["kind"] = "Must be 'discussion' or 'announcement'."
        if problems:
            raise ApiError(400, "bad_request", "Some fields are not valid.", fields=problems)
        return name, description, kind


class ChannelHandler(ApiHandler):
    """DELETE /api/channels/{id}: an admin, or the teacher who created the channel."""

    is_api = True

    @authenticated
    async def delete(self, raw_id: str) -> None:
        channel = await self.ctx.db.get_channel(parse_id(raw_id))
        if channel is None:
            raise ApiError(404, "not_found", "No such channel.")
        user = self.user
        mine = user.role == "teacher" and channel.created_by == user.id
        if user.role != "admin" and not mine:
            raise ApiError(
                403, "forbidden", "Only an admin or its creator may delete this channel."
            )
        if await self.ctx.db.delete_channel(channel.id):
            self.ctx.hub.channel_deleted(channel.id)
            log.info("channel %d deleted by user %d", channel.id, user.id)
        self.set_status(204)
        self.finish()


class MessagesHandler(ApiHandler):
    """GET /api/channels/{id}/messages?before=&limit=: history, oldest first."""

    is_api = True

    @authenticated
    async def get(self, raw_id: str) -> None:
        channel_id = parse_id(raw_id)
        before = _query_int(self, "before", 1, ID_MAX)
        limit = _query_int(self, "limit", 1, HISTORY_MAX) or HISTORY_DEFAULT
        if await self.ctx.db.get_channel(channel_id) is None:
            raise ApiError(404, "not_found", "No such channel.")
        messages = await self.ctx.db.list_messages(channel_id, before=before, limit=limit)
        self.write_json({"messages": [m.to_json() for m in messages]})


class ChatPage(PageHandler):
    """GET /chat: the chat page; chat.js does the rest over /ws/chat."""

    @authenticated
    async def get(self) -> None:
        channels = await self.ctx.db.list_channels()
        self.render_page("chat.html", channels=channels)


# ---------------------------------------------------------------------------- WebSocket


class FrameError(Exception):
    """A client frame refused with an `error` frame (code, message, ref)."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


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


def _channel_id(data: dict[str, Any], ref: str | None) -> int:
    value = data.get("channel")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= ID_MAX:
        raise FrameError("bad_request", "`channel` must be a channel id (a positive integer).", ref)
    return value


class ChatSocketHandler(ApiHandler, tornado.websocket.WebSocketHandler):
    """/ws/chat. Refusals before the upgrade are JSON like the API (401, 403, 429)."""

    is_api = True
    sub: Subscriber | None = None
    conn_id: str | None = None
    _watchdog: object | None = None

    # ------------------------------------------------------------------- handshake
    async def get(self, *args: Any, **kwargs: Any) -> None:
        # prepare() (BaseHandler) has already loaded the session from the cookie.
        if self.user is None or self.session is None:
            raise ApiError(401, "not_authenticated", "Sign in to chat.")
        origin = self.request.headers.get("Origin")
        # Checked here, not only in check_origin: Tornado skips check_origin when the Origin's
        # host matches Host, ignoring the scheme, and when Sec-Fetch-Site says same-origin.
        if origin is not None and not self.check_origin(origin):
            self.audit_rejection("origin", origin=origin[:200])
            raise ApiError(403, "forbidden", "WebSocket connections from this origin are refused.")
        settings = self.ctx.settings
        hub = self.ctx.hub
        conn_id = hub.new_conn_id()
        # The slot is taken atomically (in Redis with session-backend redis, so the caps hold
        # across processes) and held until the socket ends; the finally gives it back however
        # the upgrade or the connection ends. SessionStoreUnavailable here answers 503.
        why = await hub.admit(
            conn_id, self.user.id, self.ip, settings.sockets_per_user, settings.sockets_per_address
        )
        if why == "shutdown":
            raise ApiError(503, "unavailable", "The server is restarting; reconnect shortly.")
        if why is not None:
            self.audit_rejection(f"too_many_sockets_per_{why}")
            raise ApiError(
                429,
                "rate_limited",
                "Too many open chat connections; close another tab and retry.",
                headers={"Retry-After": "5"},
            )
        self.conn_id = conn_id
        try:
            # Returns only when the connection is over (Tornado reads frames inside it).
            await super().get(*args, **kwargs)
        finally:
            hub.release(conn_id)

    async def head(self, *args: Any, **kwargs: Any) -> None:
        # The opening handshake must be a GET (RFC 6455 §4.1), and Tornado would upgrade any
        # method carrying the upgrade headers: HEAD gets 405 before it could reach get().
        raise ApiError(405, "method_not_allowed", "WebSocket connections open with GET.")

    def allowed_methods(self) -> list[str]:
        return ["GET"]

    def check_origin(self, origin: str) -> bool:
        return origin_allowed(origin, self.request, self.ctx.settings)

    def audit_rejection(self, reason: str, **detail: Any) -> None:
        user = self.user
        self.ctx.spawn(
            self.ctx.audit.record(
                "ws_rejected",
                user_id=user.id if user else None,
                username=user.username if user else None,
                ip=self.ip,
                reason=reason,
                **detail,
            )
        )

    @property
    def ping_timeout(self) -> float:
        # Tornado caps its pong timeout at the ping interval (25 s) and checks only pongs;
        # the contract is "silent for 60 s", so plp runs its own watchdog (see _watch).
        return 0

    @property
    def silence_timeout(self) -> float:
        value = self.settings.get("websocket_ping_timeout") or SILENCE_DEFAULT
        return float(value)

    # ------------------------------------------------------------------- lifecycle
    @property
    def hub(self) -> ChatHub:
        return self.ctx.hub

    async def open(self, *args: Any, **kwargs: Any) -> None:
        ctx, user, session = self.ctx, self.user, self.session
        assert user is not None and session is not None
        rate, period = ctx.settings.chat_rate
        now = ctx.clock()
        self.bucket = TokenBucket(rate, period, now)
        self.refusals = RefusalWindow(REFUSALS_LIMIT, REFUSALS_WINDOW)
        self.last_typing = -math.inf
        self.kinds: dict[int, str] = {}
        self.loop = IOLoop.current()
        self.last_heard = self.loop.time()
        self.set_nodelay(True)
        assert self.conn_id is not None
        sub = Subscriber(
            conn_id=self.conn_id,
            session_key=session.key,
            user_id=user.id,
            user=public_user(user),
            address=self.ip,
            send=self.send_frame,
            close=self.close_from_hub,
        )
        self.sub = sub
        self.hub.add(sub)
        # The session may have ended while the handshake was awaiting (shared stores); the
        # end listener now sees this socket, and this lookup catches an end that came before.
        if await ctx.store.get_by_key(session.key) is None:
            self.hub.drop(sub, CLOSE_SESSION_ENDED, "session ended")
            return
        self.hub.send_to(sub, {"type": "hello", "user": user.to_json()})
        self._arm_watchdog()
        self._release_handshake()

    def _release_handshake(self) -> None:
        """Drop what only the handshake needed, so each idle socket holds less memory.

        The request's headers and the 101 response's headers (about 3 KiB per socket) are
        never read again once the socket is open: the client address was taken (and cached
        in `self.ip`) and the Origin checked before the upgrade.
        """
        self.request.headers = HTTPHeaders()
        self._headers = HTTPHeaders()

    def on_close(self) -> None:
        if self.sub is not None:
            self.hub.remove(self.sub)
        if self.conn_id is not None:
            self.hub.release(self.conn_id)
        if self._watchdog is not None:
            self.loop.remove_timeout(self._watchdog)
            self._watchdog = None

    def _arm_watchdog(self) -> None:
        interval = max(min(self.silence_timeout / 4, 15.0), 0.05)
        self._watchdog = self.loop.call_later(interval, self._watch)

    def _watch(self) -> None:
        self._watchdog = None
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        if self.loop.time() - self.last_heard > self.silence_timeout:
            log.info("dropping chat socket %s: peer silent", self.sub.conn_id if self.sub else "")
            if self.sub is not None:
                self.hub.remove(self.sub)
            self.close(1000, "no response to pings")
            return
        self._arm_watchdog()

    def on_pong(self, data: bytes) -> None:
        self.last_heard = self.loop.time()

    def on_ping(self, data: bytes) -> None:
        self.last_heard = self.loop.time()

    # ------------------------------------------------------------------- output
    def send_frame(self, frame: bytes) -> bool:
        """The hub's send: queue one ready-made frame; False when over the pending bound.

        When nothing is queued on the stream the frame goes straight to the non-blocking
        socket (one syscall, no Future); whatever the kernel does not take, and every frame
        while output is queued, goes through the stream so order is kept.
        """
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return True  # already closing; on_close will unsubscribe it
        stream = conn.stream
        if not stream.writing():
            try:
                sent = stream.socket.send(frame)
            except OSError:
                sent = 0  # would block, or an error the stream will report below
            if sent == len(frame):
                return True
            if sent:
                frame = memoryview(frame)[sent:]
        # The bound applies to our frames only, so Tornado's own pings and close frames
        # are never refused; set and cleared around the write.
        stream.max_write_buffer_size = PENDING_MAX
        try:
            stream.write(frame)
        except StreamBufferFullError:
            return False
        except StreamClosedError:
            return True
        finally:
            stream.max_write_buffer_size = None
        return True

    def send_event(self, event: dict[str, Any]) -> None:
        if self.sub is not None:
            self.hub.send_to(self.sub, event)
        else:  # pragma: no cover - frames arrive only after open()
            self.send_frame(text_frame(dumps(event)))

    def close_from_hub(self, code: int, reason: str) -> None:
        self.close(code, reason)

    # ------------------------------------------------------------------- input
    async def on_message(self, message: str | bytes) -> None:
        self.last_heard = self.loop.time()
        if self.sub is None or self.ws_connection is None or self.ws_connection.is_closing():
            return
        if isinstance(message, bytes):
            self.hub.remove(self.sub)
            self.close(CLOSE_UNSUPPORTED, "binary frames are not accepted")
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
            if self.sub is not None:
                self.hub.drop(self.sub, CLOSE_TRY_AGAIN, "service unavailable, try again")

    async def handle(self, message: str) -> None:
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
        assert self.sub is not None
        session = await self.ctx.store.get_by_key(self.sub.session_key)
        if session is None:
            self.hub.drop(self.sub, CLOSE_SESSION_ENDED, "session ended")
            return
        self.live_session = session
        await op(self, data)

    def refuse(self, exc: FrameError) -> None:
        event: dict[str, Any] = {"type": "error", "code": exc.code, "message": exc.message}
        if exc.ref is not None:
            event["ref"] = exc.ref
        self.send_event(event)
        if self.refusals.add(self.ctx.clock()) and self.sub is not None:
            self.hub.drop(self.sub, CLOSE_POLICY, "too many refused frames")

    async def op_ping(self, data: dict[str, Any]) -> None:
        self.send_event({"type": "pong"})

    async def op_join(self, data: dict[str, Any]) -> None:
        channel_id = _channel_id(data, "join")
        channel = await self.ctx.db.get_channel(channel_id)
        if channel is None:
            raise FrameError("not_found", "No such channel.", "join")
        assert self.sub is not None
        if not self.hub.connected(self.sub):
            return  # closed while the lookup ran
        self.kinds[channel_id] = channel.kind
        sub = self.sub
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
        channel_id = _channel_id(data, "leave")
        assert self.sub is not None
        if not self.hub.leave(self.sub, channel_id):
            raise FrameError("not_joined", "You have not joined that channel.", "leave")
        self.kinds.pop(channel_id, None)
        self.send_event({"type": "left", "channel": channel_id})

    async def op_typing(self, data: dict[str, Any]) -> None:
        channel_id = _channel_id(data, "typing")
        sub = self.sub
        assert sub is not None
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
        channel_id = _channel_id(data, ref)
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
        sub = self.sub
        assert sub is not None
        if channel_id not in sub.channels:
            raise FrameError("not_joined", "Join the channel before sending to it.", ref)
        ctx = self.ctx
        # Role and disabled state come from the user record at every message.
        user = await ctx.db.get_user(sub.user_id)
        if user is None or user.disabled:
            await ctx.store.end(sub.session_key, END_DISABLED)
            self.hub.drop(sub, CLOSE_SESSION_ENDED, "session ended")
            return
        sub.user = public_user(user)
        if self.kinds.get(channel_id) == "announcement" and user.role == "student":
            raise FrameError("forbidden", "Only teachers and admins post here.", ref)
        if not self.bucket.take(ctx.clock()):
            raise FrameError("rate_limited", "You are sending too fast; wait a moment.", ref)
        self.hub.begin()
        try:
            await ctx.store.touch(self.live_session)  # a chat message is activity
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
            self.hub.publish(channel_id, event, exclude=sub.conn_id)
            if client_id is not None:
                event["clientId"] = client_id
            self.hub.send_to(sub, event)
        finally:
            self.hub.end()

    async def fresh_user(self) -> User | None:
        """The user record as it is now; None (and the socket closed 4001) if disabled."""
        sub = self.sub
        assert sub is not None
        ctx = self.ctx
        user = await ctx.db.get_user(sub.user_id)
        if user is None or user.disabled:
            await ctx.store.end(sub.session_key, END_DISABLED)
            self.hub.drop(sub, CLOSE_SESSION_ENDED, "session ended")
            return None
        sub.user = public_user(user)
        return user

    OPS = {
        "ping": op_ping,
        "join": op_join,
        "leave": op_leave,
        "typing": op_typing,
        "send": op_send,
    }


routes = [
    (r"/api/channels", ChannelsHandler),
    (r"/api/channels/([^/]+)", ChannelHandler),
    (r"/api/channels/([^/]+)/messages", MessagesHandler),
    (r"/ws/chat", ChatSocketHandler),
    (r"/chat", ChatPage),
]
