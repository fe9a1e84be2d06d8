"""Helpers for tests that run several real plp processes: HTTP clients and chat sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from tests.support import backends
from tests.support.client import Client
from tests.support.live import LiveServer

READ_TIMEOUT = 10.0


@contextlib.contextmanager
def two_processes(root: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Servers A and B on one fresh PostgreSQL database and one fresh Redis database.

    A also carries `pg_url`, for tests that read the shared database directly.
    """
    import redis as redis_sync

    base_redis = backends.redis_url().rsplit("/", 1)[0]
    redis_url = f"{base_redis}/{random.randint(1, 63)}"
    base_pg = backends.postgres_url()
    pg_url, pg_name = backends.fresh_postgres_database(base_pg)
    raw = redis_sync.Redis.from_url(redis_url)
    raw.flushdb()
    env = {"PLP_DB": pg_url, "PLP_SESSION_BACKEND": "redis", "PLP_REDIS_URL": redis_url}
    servers: list[LiveServer] = []
    try:
        for name in ("a", "b"):
            servers.append(LiveServer(root / name, env=env).start())
        servers[0].pg_url = pg_url
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()
        raw.flushdb()
        raw.close()
        backends.drop_postgres_database(base_pg, pg_name)


def client_for(server: Any, cookies: dict[str, str] | None = None) -> Client:
    """A cookie-keeping client for a LiveServer, optionally carrying another client's cookies."""
    client = Client(AsyncHTTPClient(), server.url)
    if cookies:
        client.cookies.update(cookies)
    return client


async def open_socket(server: Any, client: Client) -> WebSocketClientConnection:
    """A chat socket on `server` with the client's cookies; the hello frame is consumed."""
    request = HTTPRequest(server.ws_url + "/ws/chat", headers={"Cookie": client.cookie_header()})
    ws = await websocket_connect(request)
    hello = await read_frame(ws)
    assert hello["type"] == "hello", hello
    return ws


async def read_frame(ws: WebSocketClientConnection, timeout: float = READ_TIMEOUT) -> Any:
    """The next JSON frame, or None when the socket closed."""
    raw = await asyncio.wait_for(ws.read_message(), timeout)
    return None if raw is None else json.loads(raw)


async def read_until(
    ws: WebSocketClientConnection, kind: str, timeout: float = READ_TIMEOUT
) -> dict[str, Any]:
    """Skip frames (presence, typing) until one of type `kind` arrives."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = await read_frame(ws, max(deadline - loop.time(), 0.01))
        assert frame is not None, f"socket closed ({ws.close_code}) while waiting for {kind}"
        if frame["type"] == kind:
            return frame


async def join(ws: WebSocketClientConnection, channel_id: int) -> None:
    ws.write_message(json.dumps({"type": "join", "channel": channel_id}))
    joined = await read_until(ws, "joined")
    assert joined["channel"] == channel_id


async def wait_closed(ws: WebSocketClientConnection, timeout: float) -> int | None:
    """Read until the server closes the socket; its close code."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = await read_frame(ws, max(deadline - loop.time(), 0.01))
        if frame is None:
            return ws.close_code


async def general_channel(client: Client) -> int:
    response = await client.fetch("/api/channels")
    assert response.code == 200, response.body
    channels = json.loads(response.body)["channels"]
    return next(c["id"] for c in channels if c["name"] == "general")
