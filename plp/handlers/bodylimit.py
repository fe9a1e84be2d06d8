"""Request bodies over 64 KiB: a 413 with the security headers, never the body buffered.

Tornado's own limit (`max_body_size`) answers a bare `400 Bad Request` with no headers and no
JSON. Instead every request passes through `BodyLimit`, the application's message delegate
(SPEC §6):

- a `Content-Length` over the limit is refused from the headers, before any of the body is
  read; a chunked body is counted as it arrives and refused once it passes the limit. Nothing
  past the limit is kept: what was buffered is dropped, later data is discarded as it comes.
- the 413 is written by a normal handler (JSON for `/api/`, a page elsewhere), so it carries
  the §10 headers and reaches the access log.
- after the 413 the rest of the body is read and thrown away, for at most DRAIN_MAX bytes and
  DRAIN_SECONDS, so the client is not cut off (a TCP reset) before it reads the answer. A body
  that ends within those bounds leaves the connection usable; otherwise it is closed. A body
  declared larger than DRAIN_MAX, or announced with `Expect: 100-continue` (the client waits
  and should send nothing), gets `Connection: close` up front.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable
from typing import Any

import tornado.web
from tornado import httputil
from tornado.ioloop import IOLoop

from .base import MAX_JSON_BODY, ApiHandler, BaseHandler
from .errors import ApiError

MAX_BODY = MAX_JSON_BODY
DRAIN_MAX = 16 * 1024 * 1024
DRAIN_SECONDS = 5.0
# The connection's own check must never fire: it would write a bare 400 (after our 413, when
# the answer came from the headers). Our count below is the limit instead.
CONNECTION_LIMIT = sys.maxsize
TOO_LARGE_MESSAGE = "The request body is larger than 64 KiB."


def declared_length(headers: httputil.HTTPHeaders) -> int | None:
    """The Content-Length when the framing is valid, else None (Tornado then answers 400)."""
    # `in` first: a GET has no Content-Length, and `get` would raise and catch a KeyError.
    if "Content-Length" not in headers or "Transfer-Encoding" in headers:
        return None
    raw = headers["Content-Length"]
    pieces = {piece.strip() for piece in raw.split(",")}
    if len(pieces) != 1:
        return None
    value = pieces.pop()
    return int(value) if value.isascii() and value.isdigit() else None


def is_api_path(path: str) -> bool:
    """Paths answered with JSON errors: the API, the chat socket and /healthz."""
    return path.startswith(("/api/", "/ws/")) or path in ("/api", "/healthz")


@tornado.web.stream_request_body
class TooLargeApiHandler(ApiHandler):
    """The 413 `too_large` for an API request whose body was refused."""

    async def prepare(self) -> None:
        raise ApiError(413, "too_large", TOO_LARGE_MESSAGE)

    def check_xsrf_cookie(self) -> None:
        pass  # the body (and any form token in it) is never read: 413 whatever else

    def data_received(self, chunk: bytes) -> None:
        pass  # never called: BodyLimit keeps the body from the handler


@tornado.web.stream_request_body
class TooLargePageHandler(BaseHandler):
    """The 413 page for a form or other non-API request whose body was refused."""

    async def prepare(self) -> None:
        raise ApiError(413, "too_large", TOO_LARGE_MESSAGE)

    def check_xsrf_cookie(self) -> None:
        pass

    def data_received(self, chunk: bytes) -> None:
        pass


class _Gate:
    """The connection as the 413 handler sees it: its `finish` waits for the drain to end.

    Finishing an HTTP/1 connection while the body is still arriving makes Tornado close it
    as soon as the answer is written; waiting lets the client finish sending first.
    """

    def __init__(self, conn: httputil.HTTPConnection, close: bool) -> None:
        self._conn = conn
        self.close = close
        self.answered = False
        self.drained = False
        self.released = False

    def write_headers(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
        chunk: bytes | None = None,
    ) -> Any:
        if self.close:
            headers["Connection"] = "close"
        return self._conn.write_headers(start_line, headers, chunk)

    def finish(self) -> None:
        self.answered = True
        self.release_when_done()

    def release_when_done(self) -> None:
        """Finish the real connection once the answer is written and the drain is over."""
        if self.answered and self.drained and not self.released:
            self.released = True
            self._conn.finish()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class BodyLimit(httputil.HTTPMessageDelegate):
    """Wraps the application's routing delegate for one request; see the module docstring."""

    def __init__(
        self,
        inner: httputil.HTTPMessageDelegate,
        app: tornado.web.Application,
        server_conn: object,
        request_conn: httputil.HTTPConnection,
    ) -> None:
        self.inner = inner
        self.app = app
        self.server_conn = server_conn
        self.conn = request_conn
        self.received = 0  # body bytes passed on, while under the limit
        self.dropped = 0  # body bytes read and thrown away after the 413
        self.started = False  # the inner delegate has seen the headers
        self.gate: _Gate | None = None
        self.timer: object | None = None
        self.start_line: httputil.RequestStartLine | None = None
        self.headers: httputil.HTTPHeaders | None = None

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        assert isinstance(start_line, httputil.RequestStartLine)
        self.start_line, self.headers = start_line, headers
        set_limit = getattr(self.conn, "set_max_body_size", None)
        if set_limit is not None:
            set_limit(CONNECTION_LIMIT)
        length = declared_length(headers)
        if length is not None and length > MAX_BODY:
            # Read after this returns: a final answer instead of `100 Continue`.
            expecting = headers.pop("Expect", "").lower() == "100-continue"
            self.refuse(close=expecting or length > DRAIN_MAX, drained=expecting)
            return None
        self.started = True
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        if self.gate is not None:
            self.drain(len(chunk))
            return None
        self.received += len(chunk)
        if self.received > MAX_BODY:
            self.inner.on_connection_close()  # drops what it buffered; it is not called again
            self.refuse(close=False, drained=False)
            return None
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        if self.gate is not None:
            self.end_drain()  # the whole body has arrived
            return
        # The whole body is in: no 413 can follow, so the request line and headers kept for
        # one are let go (a chat socket would otherwise hold them as long as it is open).
        self.start_line = self.headers = None
        self.inner.finish()

    def on_connection_close(self) -> None:
        if self.gate is not None:
            self.cancel_timer()
            self.gate.released = True  # nothing left to finish
            return
        if self.started:
            self.inner.on_connection_close()

    def refuse(self, *, close: bool, drained: bool) -> None:
        """Answer 413 through a handler, reading on (and dropping) what the client still sends."""
        assert self.start_line is not None and self.headers is not None
        self.gate = gate = _Gate(self.conn, close)
        gate.drained = drained
        request = httputil.HTTPServerRequest(
            connection=gate,  # type: ignore[arg-type]
            server_connection=self.server_conn,
            start_line=self.start_line,
            headers=self.headers,
        )
        handler = TooLargeApiHandler if is_api_path(request.path) else TooLargePageHandler
        if not drained:
            self.timer = IOLoop.current().call_later(DRAIN_SECONDS, self.end_drain)
        self.app.get_handler_delegate(request, handler).execute()

    def drain(self, size: int) -> None:
        self.dropped += size
        if self.dropped > DRAIN_MAX:
            self.end_drain()

    def end_drain(self) -> None:
        self.cancel_timer()
        gate = self.gate
        assert gate is not None
        gate.drained = True
        gate.release_when_done()

    def cancel_timer(self) -> None:
        if self.timer is not None:
            IOLoop.current().remove_timeout(self.timer)
            self.timer = None
