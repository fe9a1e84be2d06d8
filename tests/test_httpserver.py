"""plp/httpserver.py and plp/idle.py: the idle-connection limit kept by one sweep, and which
requests a graceful shutdown waits for.

A real DrainingHTTPServer on a free port with a short limit and a fast sweep; raw sockets:
a client that never finishes its headers (slow loris) is closed, while a request whose
headers arrived and whose answer is still being made is not, and is answered in full.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
import tornado.web

from plp import idle
from plp.httpserver import DrainingHTTPServer
from tests.support.wait import WAIT


class _Slow(tornado.web.RequestHandler):
    """Answers once the test says so."""

    release: asyncio.Event

    async def get(self) -> None:
        type(self).entered.set()
        await type(self).release.wait()
        self.write("done")


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_overdue_picks_only_connections_waiting_too_long():
    class Conn:
        pass

    fresh, late, busy = Conn(), Conn(), Conn()
    setattr(fresh, idle.ATTR, 100.0)
    setattr(late, idle.ATTR, 10.0)
    setattr(busy, idle.ATTR, None)  # its headers arrived: a request is being answered
    assert idle.overdue([fresh, late, busy, Conn()], now=105.0, limit=30.0) == [late]


@pytest.mark.gen_test(timeout=30)
async def test_slow_headers_are_cut_and_a_request_being_answered_is_not(io_loop):
    _Slow.entered, _Slow.release = asyncio.Event(), asyncio.Event()
    app = tornado.web.Application([(r"/slow", _Slow)])
    server = DrainingHTTPServer(app, idle_connection_timeout=0.2)
    assert server.conn_params.header_timeout is None  # no timer per request
    server.idle.every = 0.05
    port = _port()
    server.listen(port, "127.0.0.1")
    server.idle.start()
    try:
        busy_r, busy_w = await asyncio.open_connection("127.0.0.1", port)
        busy_w.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(_Slow.entered.wait(), WAIT)
        loris_r, loris_w = await asyncio.open_connection("127.0.0.1", port)
        loris_w.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n")  # never finished
        assert await asyncio.wait_for(loris_r.read(), WAIT) == b""  # closed by the sweep
        _Slow.release.set()
        head = await asyncio.wait_for(busy_r.readuntil(b"\r\n\r\n"), WAIT)
        assert head.startswith(b"HTTP/1.1 200")
        for w in (busy_w, loris_w):
            w.close()
    finally:
        server.idle.stop()
        server.stop()
        await server.close_all_connections()


@pytest.fixture
def draining(io_loop):
    """A DrainingHTTPServer serving _Slow on a free port: (server, port)."""
    _Slow.entered, _Slow.release = asyncio.Event(), asyncio.Event()
    server = DrainingHTTPServer(tornado.web.Application([(r"/slow", _Slow)]))
    port = _port()
    server.listen(port, "127.0.0.1")
    yield server, port
    _Slow.release.set()
    server.stop()
    io_loop.run_sync(server.close_all_connections)


async def _ask_slow(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(_Slow.entered.wait(), WAIT)
    return reader, writer


@pytest.mark.gen_test(timeout=30)
async def test_shutdown_waits_for_the_request_being_answered_not_for_idle_connections(draining):
    server, port = draining
    # A keep-alive connection that has finished its request, and one that never sent any.
    done_r, done_w = await asyncio.open_connection("127.0.0.1", port)
    done_w.write(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(done_r.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"HTTP/1.1 404")
    _quiet_r, quiet_w = await asyncio.open_connection("127.0.0.1", port)
    busy_r, busy_w = await _ask_slow(port)
    assert server.in_flight() == 1
    waiting = asyncio.ensure_future(server.wait_idle())
    await asyncio.sleep(0)
    assert not waiting.done()
    _Slow.release.set()
    await asyncio.wait_for(waiting, WAIT)  # the answer went out; the others stay open
    head = await asyncio.wait_for(busy_r.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"HTTP/1.1 200")
    assert server.in_flight() == 0
    assert len(server._connections) == 3
    for w in (done_w, quiet_w, busy_w):
        w.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_request_whose_client_hangs_up_is_no_longer_waited_for(draining):
    server, port = draining
    _busy_r, busy_w = await _ask_slow(port)
    waiting = asyncio.ensure_future(server.wait_idle())
    busy_w.close()
    await asyncio.wait_for(waiting, WAIT)
    assert server.in_flight() == 0
