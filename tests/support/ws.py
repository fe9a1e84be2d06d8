"""A real /ws/chat client for tests against the served app (pytest-tornado's server)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tornado.websocket import WebSocketClientConnection

WAIT = 10.0  # generous: only bounds a hang, never asserts speed


def ws_url(base_url: str) -> str:
    """The chat socket's URL on the server at base_url."""
    return "ws" + base_url[len("http") :] + "/ws/chat"


class Peer:
    """A real WebSocket client, the user it is signed in as, and its cookie."""

    def __init__(self, conn: WebSocketClientConnection, user: Any, cookie: str = "") -> None:
        self.conn = conn
        self.user = user
        self.cookie = cookie

    async def send(self, frame: Any) -> None:
        await self.conn.write_message(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self) -> dict[str, Any] | None:
        raw = await asyncio.wait_for(self.conn.read_message(), WAIT)
        return None if raw is None else json.loads(raw)

    async def expect_any(self) -> dict[str, Any]:
        """The next frame, whatever it is; the socket must still be open."""
        frame = await self.recv()
        assert frame is not None, f"socket closed ({self.conn.close_code})"
        return frame

    async def expect(self, type_: str, **fields: Any) -> dict[str, Any]:
        """The next frame, which must be of this type (and carry these fields)."""
        frame = await self.recv()
        assert frame is not None, f"closed ({self.conn.close_code}) while waiting for {type_}"
        assert frame["type"] == type_, frame
        for name, value in fields.items():
            assert frame[name] == value, frame
        return frame

    async def closed(self) -> int | None:
        """Wait for the server to close; the close code."""
        while True:
            raw = await asyncio.wait_for(self.conn.read_message(), WAIT)
            if raw is None:
                return self.conn.close_code

    async def join(self, channel: int = 1) -> None:
        """Join and wait for `joined`; presence frames of other members may come first."""
        await self.send({"type": "join", "channel": channel})
        while True:
            frame = await self.expect_any()
            if frame["type"] != "presence":
                break
        assert frame == {"type": "joined", "channel": channel}, frame

    async def roundtrip(self) -> None:
        """A ping/pong: everything the server queued before it has arrived."""
        await self.until_pong()

    async def until_pong(self) -> list[dict[str, Any]]:
        """Ping, and every frame that arrived before the pong (the socket must stay open)."""
        await self.send({"type": "ping"})
        frames = []
        while True:
            frame = await self.expect_any()
            if frame["type"] == "pong":
                return frames
            frames.append(frame)

    def close(self) -> None:
        self.conn.close()
