"""The HTTP server: which requests are still being answered (for a graceful shutdown) and
the idle-connection sweep (plp/idle.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import tornado.httpserver
from tornado import httputil

from . import idle
from .idle import IdleSweep


class _Arrival(httputil.HTTPMessageDelegate):
    """Marks its connection as answering a request once the request's headers are in."""

    __slots__ = ("inner", "server_conn")

    def __init__(self, inner: httputil.HTTPMessageDelegate, server_conn: object) -> None:
        self.inner = inner
        self.server_conn = server_conn

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        idle.arrived(self.server_conn)
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.inner.on_connection_close()


class DrainingHTTPServer(tornado.httpserver.HTTPServer):
    """An HTTPServer that knows which requests are still being answered.

    Tornado's `close_all_connections` closes streams at once, cutting off a response being
    written; shutdown waits on `wait_idle` first so running requests can finish.

    A connection is answering a request from the arrival of the request's headers until
    Tornado asks for the next request on it (which it does once the response is finished)
    or the connection ends: the state plp/idle.py keeps anyway, so nothing is wrapped or
    counted per request.
    """

    def initialize(  # type: ignore[override]
        self, *args: Any, idle_connection_timeout: float | None = None, **kwargs: Any
    ) -> None:
        super().initialize(*args, **kwargs)
        # The idle limit is kept by one sweep (plp/idle.py), not a timer per request.
        self.conn_params.header_timeout = None
        self.idle = IdleSweep(lambda: self._connections, idle_connection_timeout or 3600.0)
        self._drained: asyncio.Event | None = None  # set while shutdown waits

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        idle.waiting(server_conn)  # the previous request on it, if any, is answered
        if self._drained is not None:
            self._check_drained()
        return _Arrival(super().start_request(server_conn, request_conn), server_conn)

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        if self._drained is not None:
            self._check_drained()

    def in_flight(self) -> int:
        """How many requests are being answered."""
        return idle.answering(self._connections)

    def _check_drained(self) -> None:
        if self._drained is not None and not self.in_flight():
            self._drained.set()

    async def wait_idle(self) -> None:
        """Return once no request is being answered."""
        self._drained = asyncio.Event()
        self._check_drained()
        await self._drained.wait()
