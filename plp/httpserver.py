"""The HTTP server: which requests are still being answered (for a graceful shutdown) and
the idle-connection sweep (plp/idle.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import tornado.httpserver
from tornado import httputil

from . import idle
from .idle import IdleSweep


class _TrackedConnection:
    """The per-request HTTP connection, reporting when its response is finished."""

    def __init__(self, conn: httputil.HTTPConnection, done: Callable[[], None]) -> None:
        self._conn = conn
        self._done = done

    def finish(self) -> None:
        try:
            self._conn.finish()
        finally:
            self._done()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _TrackedDelegate(httputil.HTTPMessageDelegate):
    """Counts a request as in flight from its headers until its response is finished."""

    def __init__(
        self, inner: httputil.HTTPMessageDelegate, tracker: InFlight, server_conn: object = None
    ) -> None:
        self.inner = inner
        self.tracker = tracker
        self.server_conn = server_conn
        self.active = False

    def begin(self) -> None:
        if not self.active:
            self.active = True
            self.tracker.begin()

    def end(self) -> None:
        if self.active:
            self.active = False
            self.tracker.end()

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        idle.arrived(self.server_conn)
        self.begin()
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.end()
        self.inner.on_connection_close()


class InFlight:
    """How many HTTP requests are being answered; lets shutdown wait for them."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self) -> None:
        self.count += 1
        self._idle.clear()

    def end(self) -> None:
        self.count -= 1
        if self.count <= 0:
            self.count = 0
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no request is in flight."""
        await self._idle.wait()


class DrainingHTTPServer(tornado.httpserver.HTTPServer):
    """An HTTPServer that knows which requests are still being answered.

    Tornado's `close_all_connections` closes streams at once, cutting off a response being
    written; shutdown waits on `in_flight` first so running requests can finish.
    """

    def initialize(  # type: ignore[override]
        self, *args: Any, idle_connection_timeout: float | None = None, **kwargs: Any
    ) -> None:
        super().initialize(*args, **kwargs)
        self.in_flight = InFlight()
        # The idle limit is kept by one sweep (plp/idle.py), not a timer per request.
        self.conn_params.header_timeout = None
        self.idle = IdleSweep(lambda: self._connections, idle_connection_timeout or 3600.0)

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        idle.waiting(server_conn)
        holder: list[_TrackedDelegate] = []
        tracked = _TrackedConnection(request_conn, lambda: holder[0].end())
        delegate = _TrackedDelegate(
            super().start_request(server_conn, tracked),  # type: ignore[arg-type]
            self.in_flight,
            server_conn,
        )
        holder.append(delegate)
        return delegate
