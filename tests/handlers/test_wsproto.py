"""The chat socket's frame reader (plp/handlers/wsproto.py) against the served app, with a raw
client that writes frames byte by byte as it likes: masking, fragments, the size limit,
ping/pong, the close handshake, protocol errors, errors in on_message, order and yielding,
on_close exactly once, and what an open socket keeps."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import struct
import weakref
from typing import Any

import pytest

from plp.chat.connection import ChatConnection
from plp.handlers.chat import OPEN_KEEPS, ChatSocketHandler
from plp.handlers.wsproto import FrameReader, _Vacant
from plp.sessions.base import SessionStoreUnavailable
from tests.support import wait_until
from tests.support.ws import WAIT, RawSocket, frame, text

MAX = 16 * 1024


@pytest.fixture
def closes(monkeypatch):
    """How many times on_close ran, per handler."""
    calls: list[int] = []
    real = ChatSocketHandler.on_close

    def counted(self: ChatSocketHandler) -> None:
        calls.append(id(self))
        real(self)

    monkeypatch.setattr(ChatSocketHandler, "on_close", counted)
    return calls


@pytest.fixture
def raw(http_server, base_url, make_user, session_cookie):
    opened: list[RawSocket] = []

    async def make(name: str = "ann", extra: str = "") -> RawSocket:
        user = await make_user(name)
        client, _ = await RawSocket.open(base_url, await session_cookie(user.id), extra)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


async def all_closed(ctx, closes: list[int], count: int = 1) -> None:
    """Every socket is gone from the hub and the socket caps, and on_close ran `count` times."""
    await wait_until(lambda: ctx.hub.count() == 0 and len(closes) >= count, what="on_close")
    assert ctx.hub.sockets.held == {}
    await asyncio.sleep(0)  # (a second on_close would come in the same turn)
    assert len(closes) == count and len(set(closes)) == count, closes


# ------------------------------------------------------------------ frames that work


@pytest.mark.gen_test(timeout=20)
async def test_fragmented_message_is_reassembled_around_a_ping(raw):
    client = await raw()
    whole = text({"type": "join", "channel": 1})
    client.send(frame(0x1, whole[:5], fin=False))
    client.send(frame(0x9, b"in between"))  # a control frame may come between fragments
    client.send(frame(0x0, whole[5:12], fin=False))
    client.send(frame(0x0, whole[12:]))
    assert await client.frame() == (0xA, b"in between")
    assert await client.json() == {"type": "joined", "channel": 1}


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("form", [None, 126, 127])
async def test_every_length_encoding_is_read(raw, form):
    # 7-bit, 16-bit and 64-bit lengths (a client may use a longer form than it needs).
    client = await raw()
    for pad in (0, 200, MAX - 30):
        payload = text({"type": "ping", "pad": "x" * pad})
        if form is None:
            client.send(frame(0x1, payload))
        else:
            size = struct.pack("!H" if form == 126 else "!Q", len(payload))
            mask = os.urandom(4)
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            client.send(bytes((0x81, 0x80 | form)) + size + mask + masked)
        assert await client.json() == {"type": "pong"}
    exact = text({"type": "ping", "pad": ""})
    exact = exact[:-1] + b" " * (MAX - len(exact)) + b"}"
    assert len(exact) == MAX  # the limit exactly is read
    client.send(frame(0x1, exact))
    assert await client.json() == {"type": "pong"}


@pytest.mark.gen_test(timeout=20)
async def test_ping_gets_a_pong_with_its_payload_and_empty_ones_too(raw):
    client = await raw()
    client.send(frame(0x9, b"abc") + frame(0x9))
    assert await client.frame() == (0xA, b"abc")
    assert await client.frame() == (0xA, b"")
    client.send(frame(0xA, b"unasked"))  # an unsolicited pong is fine (RFC 6455 §5.5.3)
    client.send(frame(0x1, text({"type": "ping"})))
    assert await client.json() == {"type": "pong"}


@pytest.mark.gen_test(timeout=30)
async def test_frames_are_handled_one_at_a_time_in_order(raw, monkeypatch):
    # The next frame is read only once on_message's coroutine is done (back-pressure):
    # a spy that yields to the loop mid-frame sees never more than one frame at a time.
    # 300 frames of 1 KiB in one write also cross the reader's yield threshold.
    real = ChatConnection.handle_incoming_message
    running, most = [0], [0]

    async def spy(self: ChatConnection, message: str | bytes) -> None:
        running[0] += 1
        most[0] = max(most[0], running[0])
        for _ in range(3):
            await asyncio.sleep(0)
        await real(self, message)
        running[0] -= 1

    monkeypatch.setattr(ChatConnection, "handle_incoming_message", spy)
    client = await raw()
    burst = b"".join(
        frame(0x1, text({"type": kind, "channel": 1, "pad": "x" * 1000}))
        for _ in range(150)
        for kind in ("join", "leave")
    )
    client.send(burst)
    for _ in range(150):
        assert await client.json() == {"type": "joined", "channel": 1}
        assert await client.json() == {"type": "left", "channel": 1}
    assert most[0] == 1


@pytest.mark.gen_test(timeout=20)
async def test_other_sockets_are_served_while_one_floods(raw, monkeypatch):
    # A flood of pings read back to back yields to other sockets now and then (as Tornado's
    # reader does): the bystander's frame is handled before the flood is through.
    pings = [0]
    seen_at: list[int] = []
    real_ping = ChatSocketHandler.on_ping
    real_message = ChatConnection.handle_incoming_message

    def count_ping(self: ChatSocketHandler, data: bytes) -> None:
        pings[0] += 1
        real_ping(self, data)

    async def note(self: ChatConnection, message: str | bytes) -> None:
        seen_at.append(pings[0])
        await real_message(self, message)

    flooder = await raw("flood")
    other = await raw("other")
    monkeypatch.setattr(ChatSocketHandler, "on_ping", count_ping)
    monkeypatch.setattr(ChatConnection, "handle_incoming_message", note)
    flooder.send(frame(0x9, b"f") * 3000)
    other.send(frame(0x1, text({"type": "ping"})))
    assert await other.json() == {"type": "pong"}
    for _ in range(3000):
        assert await flooder.frame() == (0xA, b"f")
    assert pings[0] == 3000
    assert seen_at and seen_at[0] < 3000, seen_at


# ------------------------------------------------------------------ closing


@pytest.mark.gen_test(timeout=20)
async def test_close_handshake_echoes_the_peers_code(ctx, raw, closes):
    client = await raw()
    client.send(frame(0x8, struct.pack("!H", 4321) + b"bye"))
    assert await client.close_frame() == (4321, "")
    assert await client.dropped() == b""
    await all_closed(ctx, closes)


@pytest.mark.gen_test(timeout=20)
async def test_close_without_a_code_is_answered_without_one(ctx, raw, closes):
    client = await raw()
    client.send(frame(0x8))
    assert await client.frame() == (0x8, b"")
    await all_closed(ctx, closes)


@pytest.mark.gen_test(timeout=20)
async def test_server_close_then_peer_answer_calls_on_close_once(ctx, raw, closes, make_user):
    client = await raw()
    sub = next(iter(ctx.hub._all))
    sub.close(4001, "session ended")
    assert await client.close_frame() == (4001, "session ended")
    client.send(frame(0x8, struct.pack("!H", 4001)))
    assert await client.dropped() == b""
    await all_closed(ctx, closes)


@pytest.mark.gen_test(timeout=20)
async def test_peer_vanishing_calls_on_close_once(ctx, raw, closes):
    client = await raw()
    client.writer.transport.abort()
    await all_closed(ctx, closes)


# ------------------------------------------------------------------ refusals


@pytest.mark.gen_test(timeout=20)
async def test_unmasked_frame_is_refused_1002(ctx, raw, closes):
    client = await raw()
    client.send(frame(0x1, text({"type": "ping"}), masked=False))
    assert await client.close_frame() == (1002, "client frames must be masked")
    await all_closed(ctx, closes)


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("pieces", [[MAX + 1], [MAX // 2, MAX // 2 + 1], [10, 10, MAX]])
async def test_message_over_16_kib_closes_1009_whole_or_in_fragments(ctx, raw, closes, pieces):
    client = await raw()
    for i, size in enumerate(pieces):
        last = i == len(pieces) - 1
        client.send(frame(0x1 if i == 0 else 0x0, b"x" * size, fin=last))
    assert await client.close_frame() == (1009, "message too big")
    await all_closed(ctx, closes)


@pytest.mark.gen_test(timeout=20)
async def test_huge_declared_length_closes_1009_before_any_payload(ctx, raw, closes):
    client = await raw()
    client.send(bytes((0x81, 0x80 | 127)) + struct.pack("!Q", 2**62))  # no payload follows
    assert await client.close_frame() == (1009, "message too big")
    await all_closed(ctx, closes)


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(frame(0x1 | 0x40, b"{}"), id="reserved-bit"),
        pytest.param(frame(0x0, b"{}"), id="continuation-of-nothing"),
        pytest.param(frame(0x1, b"{", fin=False) + frame(0x1, b"}"), id="new-message-inside"),
        pytest.param(frame(0x9, b"x", fin=False), id="fragmented-ping"),
        pytest.param(bytes((0x89, 0x80 | 126)) + b"\x00\x80" + b"\0" * 132, id="long-ping"),
        pytest.param(frame(0x3, b"x"), id="unknown-opcode"),
        pytest.param(frame(0x1, b'{"type": "\xff"}'), id="bad-utf8"),
    ],
)
async def test_protocol_errors_drop_the_connection(ctx, raw, closes, bad):
    client = await raw()
    client.send(bad)
    await client.dropped()
    await all_closed(ctx, closes)


@pytest.mark.gen_test(timeout=20)
async def test_binary_frame_still_closes_1003(ctx, raw, closes):
    client = await raw()
    client.send(frame(0x2, b"\x00\x01"))
    assert (await client.close_frame())[0] == 1003
    await all_closed(ctx, closes)


@pytest.mark.gen_test(timeout=20)
async def test_error_in_on_message_is_logged_and_drops_only_that_socket(
    ctx, raw, closes, monkeypatch, caplog
):
    # A bug no client input can provoke on purpose: this frame's handling raises.
    real = ChatConnection.handle_incoming_message

    async def faulty(self: ChatConnection, message: str | bytes) -> None:
        if "boom" in message:
            raise RuntimeError("bug while handling a frame")
        await real(self, message)

    monkeypatch.setattr(ChatConnection, "handle_incoming_message", faulty)
    victim = await raw("victim")
    bystander = await raw("bystander")
    with caplog.at_level(logging.ERROR):
        victim.send(frame(0x1, text({"type": "ping", "x": "boom"})))
        await victim.dropped()
        await wait_until(lambda: ctx.hub.count() == 1, what="the victim to go")
    assert "bug while handling a frame" in caplog.text
    assert "uncaught exception" in caplog.text
    bystander.send(frame(0x1, text({"type": "ping"})))
    assert await bystander.json() == {"type": "pong"}
    assert len(closes) == 1


@pytest.mark.gen_test(timeout=20)
async def test_open_failing_still_calls_on_close_and_frees_the_slot(
    ctx, http_server, base_url, make_user, session_cookie, closes, monkeypatch, caplog
):
    # The memory session store cannot be made to fail: its lookup in open() is made to.
    user = await make_user("ann")
    cookie = await session_cookie(user.id)
    real = ChatConnection.connect

    async def failing(self: ChatConnection, who: Any) -> bool:
        self.hub.add(self.sub)
        raise SessionStoreUnavailable("store down")

    monkeypatch.setattr(ChatConnection, "connect", failing)
    host, port = base_url.split("://", 1)[1].split(":")
    reader, writer = await asyncio.open_connection("127.0.0.1", int(port))
    writer.write(
        (
            f"GET /ws/chat HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nCookie: {cookie}\r\n\r\n"
        ).encode()
    )
    with caplog.at_level(logging.ERROR):
        got = await asyncio.wait_for(reader.read(), WAIT)
    writer.close()
    assert got.startswith(b"HTTP/1.1 101")
    await all_closed(ctx, closes)
    monkeypatch.setattr(ChatConnection, "connect", real)


# ------------------------------------------------------------------ what stays per socket


@pytest.mark.gen_test(timeout=20)
async def test_no_compression_or_subprotocol_is_negotiated(
    http_server, base_url, make_user, session_cookie
):
    user = await make_user("ann")
    client, head = await RawSocket.open(
        base_url,
        await session_cookie(user.id),
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        "Sec-WebSocket-Protocol: chat, superchat\r\n",
    )
    lowered = head.lower()
    assert b"sec-websocket-extensions" not in lowered
    assert b"sec-websocket-protocol" not in lowered
    client.send(frame(0x1, text({"type": "ping"})))
    assert await client.json() == {"type": "pong"}
    client.close()


@pytest.mark.gen_test(timeout=20)
async def test_open_socket_keeps_no_request_and_no_idle_buffers(ctx, raw):
    client = await raw()
    sub = next(iter(ctx.hub._all))
    handler = sub.send.__self__
    assert isinstance(handler, ChatSocketHandler)
    assert set(vars(handler)) <= set(OPEN_KEEPS)
    protocol = handler.ws_connection
    assert isinstance(protocol, FrameReader)
    # The request and everything it held are freed once the socket is open.
    assert not any(type(o).__name__ == "HTTPServerRequest" for o in gc.get_referents(handler))
    stream = protocol.stream
    assert isinstance(stream._write_futures, _Vacant)
    assert isinstance(stream._write_buffer._buffers, _Vacant)
    # The reader is waiting on one read, and no coroutine of the request is left.
    assert stream.reading()
    tasks = [t for t in asyncio.all_tasks() if "_execute" in repr(t.get_coro())]
    assert tasks == []
    # Output still flows, and a ping answered later too.
    client.send(frame(0x1, text({"type": "ping"})))
    assert await client.json() == {"type": "pong"}
    ref = weakref.ref(handler)
    del handler, sub, protocol, stream
    client.close()
    await wait_until(lambda: ctx.hub.count() == 0, what="the socket to close")
    gc.collect()
    assert ref() is None


@pytest.mark.gen_test(timeout=30)
async def test_pings_from_a_peer_that_does_not_read_queue_one_pong(
    ctx, http_server, base_url, make_user, session_cookie, monkeypatch
):
    # RFC 6455 §5.5.3: only the latest ping need be answered. A peer that pings without
    # reading must not grow the server's buffer by a pong per ping.
    pings = [0]
    real_ping = ChatSocketHandler.on_ping

    def count_ping(self: ChatSocketHandler, data: bytes) -> None:
        pings[0] += 1
        real_ping(self, data)

    monkeypatch.setattr(ChatSocketHandler, "on_ping", count_ping)
    user = await make_user("ann")
    cookie = await session_cookie(user.id)
    host, port = base_url.split("://", 1)[1].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader that lags
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        (
            f"GET /ws/chat HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nCookie: {cookie}\r\n\r\n"
        ).encode()
    )
    client = RawSocket(reader, writer)
    try:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert (await client.json())["type"] == "hello"
        stream = next(iter(ctx.hub._all)).send.__self__.ws_connection.stream
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # no autotuning
        count = 5000
        payloads = [f"{i:06d}".encode() + b"x" * 100 for i in range(count)]
        client.send(b"".join(frame(0x9, p) for p in payloads))
        await wait_until(lambda: pings[0] == count, what="every ping read")
        assert len(stream._write_buffer) <= 2 * 110  # at most one pong waiting, not thousands
        answered = []
        while not answered or answered[-1] != payloads[-1]:
            opcode, payload = await client.frame()
            assert opcode == 0xA
            answered.append(payload)
        assert answered == sorted(answered) and len(answered) < count
        assert set(answered) <= set(payloads)
    finally:
        client.close()
