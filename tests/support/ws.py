"""A real /ws/chat client for tests against the served app (pytest-tornado's server)."""

from __future__ import annotations

import asyncio
import json
import os
import struct
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


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, masked: bool = True) -> bytes:
    """One client frame (masked unless told otherwise)."""
    head = bytes(((0x80 if fin else 0) | opcode,))
    bit = 0x80 if masked else 0
    size = len(payload)
    if size < 126:
        head += bytes((bit | size,))
    elif size <= 0xFFFF:
        head += struct.pack("!BH", bit | 126, size)
    else:
        head += struct.pack("!BQ", bit | 127, size)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def text(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


class RawSocket:
    """A hand-rolled WebSocket client over a plain TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, base_url: str, cookie: str, extra: str = "", *, hello: bool = True
    ) -> tuple[RawSocket, bytes]:
        """Handshake with `cookie` (and `extra` header lines); with `hello`, the server's
        hello frame is read and checked too. The socket and the 101's head."""
        host, port = base_url.split("://", 1)[1].split(":")
        reader, writer = await asyncio.open_connection("127.0.0.1", int(port))
        writer.write(
            (
                "GET /ws/chat HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra}"
                f"Cookie: {cookie}\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert head.startswith(b"HTTP/1.1 101"), head
        raw = cls(reader, writer)
        if hello:
            opcode, greeting = await raw.frame()
            assert opcode == 0x1 and json.loads(greeting)["type"] == "hello"
        return raw, head

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def frame(self) -> tuple[int, bytes]:
        """The next (opcode, payload) from the server; server frames are never masked."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), WAIT)
        assert not second & 0x80
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(await self.reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await self.reader.readexactly(8), "big")
        return first & 0x0F, await asyncio.wait_for(self.reader.readexactly(size), WAIT)

    async def json(self) -> dict[str, Any]:
        opcode, payload = await self.frame()
        assert opcode == 0x1, (opcode, payload)
        return json.loads(payload)

    async def close_frame(self) -> tuple[int, str]:
        """Skip to the server's close frame: (code, reason)."""
        while True:
            opcode, payload = await self.frame()
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big"), payload[2:].decode()

    async def dropped(self) -> bytes:
        """Wait for the server to end the TCP connection; whatever it sent before."""
        return await asyncio.wait_for(self.reader.read(), WAIT)

    def close(self) -> None:
        self.writer.close()
