"""WebSocket load worker for bench/run.py: raw asyncio sockets, no Tornado, cheap per frame.

`python bench/wsload.py CONFIG_JSON` opens `sockets` connections to `/ws/chat` on
127.0.0.1:`port` (cycling over `cookies`), waits for each greeting, optionally joins
`channel`, prints `{"ready": n, "seconds": s}` (s: how long opening them took) and then
obeys JSON commands on stdin, one per line:

- `{"cmd": "expect", "count": N, "timeout": s}`: print `{"armed": true}`, count `message`
  frames until N arrived (over all sockets), then print `{"received", "first", "last"}`
  (time.monotonic()); other commands are obeyed meanwhile.
- `{"cmd": "burst", "count": M}` (sender only): send M chat messages back to back.
- `{"cmd": "paced", "rate": r, "seconds": s}` (sender only): r messages a second, each
  carrying its send time; receivers record send→delivery latency.
- `{"cmd": "latencies"}`: print the recorded latencies (ms) and clear them.
- `{"cmd": "quit"}` or end of input: close everything and exit.

All times are CLOCK_MONOTONIC, which every process on the machine shares. Client frames
are masked as RFC 6455 requires. `proto` is "plp" (default) or "express" (the Express
original's `connected` / `join_channel` / `send_message`). Only ever connects to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import resource
import struct
import sys
import time
from typing import Any

MESSAGE_MARK = b'"type":"message"'
MESSAGE_MARK_SPACED = b'"type": "message"'  # json.dumps defaults (the naive baseline)
STAMP_RE = re.compile(rb'"(?:text|content)": ?"lat (\d+)')

# What each server's protocol calls the greeting, a join and a chat message: plp's
# (docs/protocol.md) and the Express original's (shared/peers/express/README.md).
PROTOCOLS: dict[str, dict[str, str]] = {
    "plp": {"hello": "hello", "joined": "joined"},
    "express": {"hello": "connected", "joined": "joined_channel"},
}


def join_frame(proto: str, channel: int) -> dict[str, Any]:
    if proto == "express":
        return {"type": "join_channel", "channelId": channel}
    return {"type": "join", "channel": channel}


def chat_frame(proto: str, channel: int | None, text: str) -> dict[str, Any]:
    if proto == "express":
        return {"type": "send_message", "channelId": channel, "content": text}
    return {"type": "send", "channel": channel, "text": text}


def mask_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A final, masked client frame."""
    key = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size <= 0xFFFF:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    repeated = (key * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        size, "big"
    )
    return header + key + masked


class Stats:
    """Counters shared by every connection of this worker."""

    def __init__(self) -> None:
        self.messages = 0
        self.first = 0.0
        self.last = 0.0
        self.latencies: list[float] = []
        self.waiter: asyncio.Future | None = None
        self.target = 0
        self.timing = False  # parse send stamps (paced runs only)


class Conn(asyncio.Protocol):
    """One WebSocket client connection: handshake, then frame parsing."""

    def __init__(self, stats: Stats, request: bytes) -> None:
        self.stats = stats
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.upgraded = False
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()
        self.texts: asyncio.Queue[bytes] | None = asyncio.Queue()  # until ready
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            status = buf[: buf.find(b"\r\n")]
            if b" 101 " not in status:
                self.opened.set_exception(ConnectionError(status.decode("latin-1")))
                self.transport.close()  # type: ignore[union-attr]
                return
            self.upgraded = True
            self.opened.set_result(None)
            buf = buf[end + 4 :]
        pos = 0
        size = len(buf)
        stats = self.stats
        got = 0
        while size - pos >= 2:
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            end = pos + head + length
            if end > size:
                break
            opcode = buf[pos] & 0x0F
            start = pos + head
            if opcode == 0x1:
                # Searched in place (no copy per frame): the client must outpace the server.
                if (
                    buf.find(MESSAGE_MARK, start, end) >= 0
                    or buf.find(MESSAGE_MARK_SPACED, start, end) >= 0
                ):
                    got += 1
                    if stats.timing:
                        stamp = STAMP_RE.search(buf, start, end)
                        if stamp is not None:
                            stats.latencies.append(
                                (time.monotonic_ns() - int(stamp.group(1))) / 1e6
                            )
                elif self.texts is not None:
                    self.texts.put_nowait(buf[start:end])
            elif opcode == 0x9:  # ping: answer with the same payload
                self.send(buf[start:end], 0xA)
            elif opcode == 0x8:
                self.transport.close()  # type: ignore[union-attr]
            pos = end
        if got:
            now = time.monotonic()
            if not stats.messages:
                stats.first = now
            stats.last = now
            stats.messages += got
            if stats.waiter is not None and stats.messages >= stats.target:
                if not stats.waiter.done():
                    stats.waiter.set_result(None)
        self.buf = buf[pos:]

    def send(self, payload: bytes, opcode: int = 0x1) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(mask_frame(payload, opcode))

    def send_json(self, data: dict[str, Any]) -> None:
        self.send(json.dumps(data, separators=(",", ":")).encode())

    async def wait_for(self, kind: str, timeout: float = 60.0) -> dict[str, Any]:
        assert self.texts is not None
        deadline = time.monotonic() + timeout
        while True:
            payload = await asyncio.wait_for(self.texts.get(), deadline - time.monotonic())
            data = json.loads(payload)
            if data.get("type") == kind:
                return data
            if data.get("type") == "error":
                raise RuntimeError(f"server error frame: {data}")


async def open_conn(cfg: dict[str, Any], stats: Stats, cookie: str) -> Conn:
    loop = asyncio.get_running_loop()
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {cfg.get('path', '/ws/chat')} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{cfg['port']}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Cookie: {cookie}\r\n"
        "X-Forwarded-Proto: https\r\nX-Forwarded-For: 127.0.0.5\r\n"
        "User-Agent: plp-bench-ws\r\n\r\n"
    ).encode()
    _, conn = await loop.create_connection(
        lambda: Conn(stats, request), "127.0.0.1", int(cfg["port"])
    )
    await asyncio.wait_for(conn.opened, 60)
    proto = cfg.get("proto", "plp")
    await conn.wait_for(PROTOCOLS[proto]["hello"])
    channel = cfg.get("channel")
    if channel is not None:
        conn.send_json(join_frame(proto, channel))
        await conn.wait_for(PROTOCOLS[proto]["joined"])
    return conn


async def main(cfg: dict[str, Any]) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stats = Stats()
    cookies = cfg["cookies"]
    conns: list[Conn] = []
    batch = int(cfg.get("batch", 50))
    total = int(cfg["sockets"])
    opening = time.monotonic()
    for start in range(0, total, batch):
        got = await asyncio.gather(
            *(
                open_conn(cfg, stats, cookies[i % len(cookies)])
                for i in range(start, min(total, start + batch))
            )
        )
        conns.extend(got)
    for conn in conns:
        conn.texts = None  # from here on only `message` frames are looked at
    # Connects/s over the whole opening: TCP connect, cookie check, handshake, greeting.
    out({"ready": len(conns), "seconds": time.monotonic() - opening})
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    channel = cfg.get("channel")
    proto = cfg.get("proto", "plp")
    sender = conns[0] if conns else None
    stats.timing = bool(cfg.get("timing"))
    tasks: set[asyncio.Future] = set()
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        name = cmd["cmd"]
        if name == "quit":
            break
        if name == "expect":
            stats.messages = 0
            stats.first = stats.last = 0.0
            stats.target = int(cmd["count"])
            stats.waiter = loop.create_future()
            tasks.add(asyncio.ensure_future(report(stats, float(cmd.get("timeout", 60)))))
            out({"armed": True})
        elif name == "burst":
            assert sender is not None and sender.transport is not None
            frames = b"".join(
                mask_frame(json.dumps(chat_frame(proto, channel, f"burst {i}")).encode())
                for i in range(int(cmd["count"]))
            )
            started = time.monotonic()
            sender.transport.write(frames)
            out({"sent_at": started})
        elif name == "paced":
            assert sender is not None
            rate = float(cmd["rate"])
            count = int(rate * float(cmd["seconds"]))
            started = time.monotonic()
            for i in range(count):
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sender.send_json(chat_frame(proto, channel, f"lat {time.monotonic_ns()}"))
            out({"sent": count, "seconds": time.monotonic() - started})
        elif name == "latencies":
            out({"latencies": stats.latencies})
            stats.latencies = []
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()


async def report(stats: Stats, timeout: float) -> None:
    """Print the count once the expected number of messages arrived (or at the timeout)."""
    assert stats.waiter is not None
    try:
        await asyncio.wait_for(asyncio.shield(stats.waiter), timeout)
    except TimeoutError:
        pass
    stats.waiter = None
    out({"received": stats.messages, "first": stats.first, "last": stats.last})


def out(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
