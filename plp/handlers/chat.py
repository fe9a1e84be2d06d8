"""The /ws/chat WebSocket: the handshake and the writes (protocol: docs/protocol.md).

The socket handler authenticates with the same session code as every HTTP handler, in
`prepare()`, and refuses in `get()` (401 no session, 403 foreign Origin, 429 over the socket
caps) before `super().get()` upgrades, so a refused client never gets a WebSocket at all.
After the upgrade each frame goes to a `ChatConnection` (plp/chat/connection.py), which runs
the protocol and sees this socket only as `send_frame` and `close_from_hub`; `send_frame`
queues ready-made frame bytes on the connection's stream. Frames are read by callbacks
(`FrameReader`, plp/handlers/wsproto.py): `get` returns once the socket is open, and the handler
then keeps only what an open socket uses (`OPEN_KEEPS`).
"""

from __future__ import annotations

import logging
from typing import Any

import tornado.web
import tornado.websocket
from tornado.ioloop import IOLoop
from tornado.iostream import StreamBufferFullError, StreamClosedError
from tornado.websocket import _WebSocketParams

from ..chat.connection import ChatConnection
from ..chat.heartbeat import Heartbeat
from ..security import origin_allowed
from .base import ApiHandler
from .errors import ApiError
from .wsproto import FrameReader, protocol_for

log = logging.getLogger(__name__)

PENDING_MAX = 1024 * 1024  # a socket with more queued output than this is too slow: 1008
SILENCE_DEFAULT = 60.0  # a peer heard nothing from for this long is dropped
# What an open chat socket's handler keeps (see _shed_handshake).
OPEN_KEEPS = (
    "application",
    "ws_connection",
    "connection",
    "conn_id",
    "beat_slot",
    "loop",
    "last_heard",
    "_on_close_called",
    "close_code",
    "close_reason",
    "_status_code",
    "_finished",
    "_auto_finish",  # read by Tornado's _execute once get returns
    "_prepared_future",
    "_current_user",
    "_plp_ip",
)


class ChatSocketHandler(ApiHandler, tornado.websocket.WebSocketHandler):
    """/ws/chat. Refusals before the upgrade are JSON like the API (401, 403, 429)."""

    connection: ChatConnection | None = None
    conn_id: str | None = None
    beat_slot = -1  # the heartbeat's slot while this socket is in it

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
            # Returns once the socket is open (or refused): frames are read by callbacks
            # (plp/handlers/wsproto.py), and the socket gives the slot back in on_close.
            protocol = self._upgrade(args, kwargs)
            if protocol is not None:
                await protocol.accept_connection(self)
        finally:
            if self.connection is None:  # never opened: no on_close will come
                hub.release(conn_id)
        if self.connection is not None:
            self._shed_handshake()

    def _upgrade(
        self, args: tuple, kwargs: dict[str, Any]
    ) -> tornado.websocket.WebSocketProtocol | None:
        """Tornado's `WebSocketHandler.get` up to the upgrade, with the same answers; the
        protocol to accept, or None once a refusal is written.

        Tornado's `get` stays suspended for the whole life of the socket; here the checks
        run in a plain method and `get` returns once the socket is open.
        """
        self.open_args, self.open_kwargs = args, kwargs
        headers = self.request.headers
        refusal = None
        if headers.get("Upgrade", "").lower() != "websocket":
            refusal = 'Can "Upgrade" only to "WebSocket".'
        elif "upgrade" not in (p.strip().lower() for p in headers.get("Connection", "").split(",")):
            refusal = '"Connection" must be "Upgrade".'
        elif self._check_cross_origin(self.check_origin) is not None:
            self.set_status(403)
            self.finish("Cross origin websockets not allowed")
            return None
        if refusal is not None:
            self.set_status(400)
            self.finish(refusal)
            return None
        self.ws_connection = self.get_websocket_protocol()
        if self.ws_connection is None:
            self.set_status(426, "Upgrade Required")
            self.set_header("Sec-WebSocket-Version", "13")
            self.finish()
        return self.ws_connection

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

    def get_websocket_protocol(self) -> FrameReader | None:
        return protocol_for(self, socket_params(self.application, self.max_message_size))

    @property
    def ping_interval(self) -> float:
        # Tornado's heartbeat is a Task per socket; every socket here shares one (beat()).
        return 0

    @property
    def ping_timeout(self) -> float:
        # Tornado caps its pong timeout at the ping interval (25 s) and checks only pongs;
        # the contract is "silent for 60 s", so plp's heartbeat checks silence (beat()).
        return 0

    # ------------------------------------------------------------------- lifecycle
    async def open(self, *args: Any, **kwargs: Any) -> None:
        ctx, user, session = self.ctx, self.user, self.session
        assert user is not None and session is not None and self.conn_id is not None
        self.loop = IOLoop.current()
        self.last_heard = self.loop.time()
        self.set_nodelay(True)
        self.connection = ChatConnection(
            ctx,
            conn_id=self.conn_id,
            user=user,
            session=session,
            address=self.ip,
            send=self.send_frame,
            close=self.close_from_hub,
        )
        if not await self.connection.connect(user):
            return
        heartbeat(self.application).add(self)

    def _shed_handshake(self) -> None:
        """Keep only what an open socket uses (`OPEN_KEEPS`), so each idle socket holds less.

        Everything else on a handler is the HTTP request's: the request object (and through
        it the HTTP/1 connection, the routing and body-limit delegates and their headers),
        the response headers, template namespaces, Tornado's guards against HTTP writes.
        Once the socket is open nothing reads them: the client address was taken (cached in
        `self.ip`) and the Origin checked before the upgrade, and on_close, the heartbeat,
        the hub's send and close, and `log_exception` below read only `OPEN_KEEPS` (and
        Tornado's `_execute`, finishing once `get` returns, reads `_auto_finish`, `_finished`
        and `_prepared_future`).
        """
        attrs = self.__dict__
        self.__dict__ = {name: attrs[name] for name in OPEN_KEEPS if name in attrs}

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if "request" in self.__dict__:
            super().log_exception(typ, value, tb)
        else:  # an open socket: the request is gone (_shed_handshake)
            log.error("chat socket %s: uncaught exception", self.conn_id, exc_info=(typ, value, tb))

    def on_close(self) -> None:
        if self.connection is not None:
            self.connection.disconnect()
        if self.conn_id is not None:
            self.ctx.hub.release(self.conn_id)
        if self.beat_slot >= 0:
            heartbeat(self.application).remove(self)
            self.beat_slot = -1

    def beat(self, ping: bool, silent: bool) -> None:
        """The shared heartbeat's visit: drop a peer silent too long, or ping it."""
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return
        if silent:
            log.info("dropping chat socket %s: peer silent", self.conn_id or "")
            if self.connection is not None:
                self.connection.disconnect()
            self.close(1000, "no response to pings")
        elif ping:
            conn.write_ping(b"")

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

    def close_from_hub(self, code: int, reason: str) -> None:
        self.close(code, reason)

    # ------------------------------------------------------------------- input
    async def on_message(self, message: str | bytes) -> None:
        self.last_heard = self.loop.time()
        conn = self.ws_connection
        if self.connection is None or conn is None or conn.is_closing():
            return
        await self.connection.handle_incoming_message(message)


def socket_params(app: tornado.web.Application, size: int) -> _WebSocketParams:
    """The protocol parameters, one object for all the application's sockets: the message
    size limit (pings are plp's heartbeat's, compression is never offered)."""
    params = app.__dict__.get("_plp_ws_params")
    if params is None or params.max_message_size != size:
        params = app.__dict__["_plp_ws_params"] = _WebSocketParams(max_message_size=size)
    return params


def heartbeat(app: tornado.web.Application) -> Heartbeat:
    """The application's one heartbeat for all its chat sockets (made on first use)."""
    beat = app.__dict__.get("_plp_heartbeat")
    if beat is None:
        settings = app.settings

        def timing() -> tuple[float, float]:
            interval = float(settings.get("websocket_ping_interval") or 0)
            return interval, float(settings.get("websocket_ping_timeout") or SILENCE_DEFAULT)

        beat = app.__dict__["_plp_heartbeat"] = Heartbeat(timing)
    return beat


routes = [(r"/ws/chat", ChatSocketHandler)]
