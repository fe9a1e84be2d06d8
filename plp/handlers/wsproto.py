"""The chat socket's WebSocket protocol: Tornado's handshake, frames read by callbacks.

Tornado's `WebSocketProtocol13` reads frames in a coroutine (`_receive_frame_loop`) that the
handler's `get` awaits for the whole life of the socket, so every idle socket holds a chain
of six suspended frames and the request's Task (about 3 KiB), and through them the request,
its HTTP/1 connection and routing delegates. `FrameReader` keeps Tornado's handshake and
writes and reads frames with callbacks on the stream's read futures instead: once `open`
has returned, `get` returns too, the request's Task ends, and an idle socket is one pending
2-byte read.

Kept from Tornado, and tested against a real server in tests/handlers/test_wsproto.py:
fragmented messages are reassembled; a message over `max_message_size` (its fragments
together) is refused with close 1009; a ping is answered with a pong carrying its payload
(at most one pong queued: a peer that pings without reading cannot grow our buffer); a
close frame is answered with the peer's code; reserved bits, fragmented control frames,
continuation without a start, bad UTF-8 and unknown opcodes drop the connection; an
exception in `on_message` is logged and drops this connection only; the next frame is read
only once `on_message`'s coroutine is done (back-pressure and order, as Tornado). Stricter
than Tornado (RFC 6455 §5.1): an unmasked client frame is refused with close 1002.
`on_close` is called exactly once, however the socket ends, once the 101 has been sent.
plp negotiates no compression and no subprotocol.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
import sys
from typing import TYPE_CHECKING, Any

from tornado.concurrent import Future
from tornado.iostream import IOStream, StreamClosedError
from tornado.util import _websocket_mask
from tornado.websocket import WebSocketProtocol13, _WebSocketParams

if TYPE_CHECKING:
    from tornado.websocket import WebSocketHandler

log = logging.getLogger(__name__)

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_TOO_BIG = 1009
# Frames read back to back before giving other sockets a turn (as Tornado's reader): a
# frame counts its bytes plus FRAME_COST, so a stream of tiny frames yields too.
YIELD_AFTER = 256 * 1024
FRAME_COST = 1024

_HEAD, _LEN16, _LEN64, _BODY = range(4)
_CONTROL = 0x8


class FrameReader(WebSocketProtocol13):
    """WebSocket protocol 13 for a server socket, reading frames by callbacks.

    Only the attributes a socket needs are set per instance; Tornado's other per-socket
    state (compression, counters, subprotocol) stays at the class defaults below.
    """

    _selected_subprotocol = None
    _compression_options = None
    _compressor = None
    _decompressor = None
    _frame_compressed = None
    _ping_coroutine = None
    _waiting: object = None
    _received_pong = False
    _message_bytes_in = _message_bytes_out = _wire_bytes_in = _wire_bytes_out = 0
    close_code: int | None = None
    close_reason: str | None = None
    mask_outgoing = False

    # Frame-reader state; a frame's head is kept only until its payload has arrived.
    _state = _HEAD
    _head = 0  # FIN, RSV and opcode byte of the frame being read
    _fragments: bytearray | None = None  # the message so far, while it is fragmented
    _fragments_opcode = 0
    _finished = False  # on_ws_connection_close has been called
    _pong_queued: Future[None] | None = None  # a pong still in the stream's buffer
    _pong_next: bytes | None = None  # the latest ping to answer once it has gone

    def __init__(self, handler: WebSocketHandler, params: _WebSocketParams) -> None:
        self.handler = handler
        self.params = params
        self.stream: IOStream = None  # type: ignore[assignment]  # set at the upgrade
        self.client_terminated = False
        self.server_terminated = False

    # ------------------------------------------------------------------- handshake
    async def _accept_connection(self, handler: WebSocketHandler) -> None:
        handler.clear_header("Content-Type")
        handler.set_status(101)
        handler.set_header("Upgrade", "websocket")
        handler.set_header("Connection", "Upgrade")
        handler.set_header("Sec-WebSocket-Accept", self._challenge_response(handler))
        handler.finish()
        self.stream = handler._detach_stream()
        slim_stream(self.stream)
        try:
            opened = handler.open(*handler.open_args, **handler.open_kwargs)
            if opened is not None:
                await opened
        except Exception:
            handler.log_exception(*sys.exc_info())
            self._abort()
        self._pump(None)

    # ------------------------------------------------------------------- reading
    def _pump(self, done: Future[Any] | None) -> None:
        """Act on what `done` brought (a read or on_message), then read on until a read
        must wait; a callback, so nothing is suspended between frames."""
        work = 0
        while True:
            if done is not None:
                try:
                    data = done.result()
                except StreamClosedError:
                    self._abort()
                    data = None
                except (Exception, asyncio.CancelledError):
                    log.exception("chat socket: reading a frame failed")
                    self._abort()
                    data = None
                if self.client_terminated:
                    self._finish()
                    return
                if isinstance(data, bytes):
                    work += len(data) + FRAME_COST
                    handled = self._advance(data)
                    if self.client_terminated:
                        self._finish()
                        return
                    if handled is not None and not handled.done():
                        handled.add_done_callback(self._pump)  # the next frame after it
                        return
            if self.client_terminated:
                self._finish()
                return
            try:
                done = self.stream.read_bytes(self._wanted)
            except StreamClosedError:
                self._abort()
                self._finish()
                return
            if not done.done() or work >= YIELD_AFTER:
                done.add_done_callback(self._pump)  # (a done one runs at the next turn)
                return

    _wanted = 2  # bytes the current state reads next

    def _advance(self, data: bytes) -> Future[None] | None:
        """One read's bytes for the current state; the future of a message being handled."""
        state = self._state
        if state == _HEAD:
            return self._on_head(data)
        if state == _BODY:
            self._state, self._wanted = _HEAD, 2
            return self._on_payload(data[:4], data[4:])
        length = struct.unpack("!H" if state == _LEN16 else "!Q", data)[0]
        self._expect_payload(length)
        return None

    def _on_head(self, data: bytes) -> None:
        head, second = data[0], data[1]
        opcode = head & self.OPCODE_MASK
        if head & self.RSV_MASK or opcode not in (0x0, 0x1, 0x2, 0x8, 0x9, 0xA):
            self._abort()  # an extension we did not agree, or an opcode RFC 6455 lacks
            return
        if opcode & _CONTROL:
            if not head & self.FIN or second & 0x7F >= 126:
                self._abort()  # control frames are whole and short (RFC 6455 §5.5)
                return
        elif (opcode == 0) != (self._fragments is not None):
            self._abort()  # a continuation of nothing, or a new message inside one
            return
        if not second & 0x80:
            self.close(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
            self._abort()
            return
        self._head = head
        size = second & 0x7F
        if size == 126:
            self._state, self._wanted = _LEN16, 2
        elif size == 127:
            self._state, self._wanted = _LEN64, 8
        else:
            self._expect_payload(size)

    def _expect_payload(self, length: int) -> None:
        if not self._head & _CONTROL:
            total = length + (len(self._fragments) if self._fragments is not None else 0)
            if total > self.params.max_message_size:
                self.close(CLOSE_TOO_BIG, "message too big")
                self._abort()
                return
        self._state, self._wanted = _BODY, 4 + length  # the mask, then the payload

    def _on_payload(self, mask: bytes, payload: bytes) -> Future[None] | None:
        head = self._head
        opcode = head & self.OPCODE_MASK
        data = _websocket_mask(mask, payload) if payload else b""
        if opcode & _CONTROL:
            return self._on_control(opcode, data)
        if opcode:
            if not head & self.FIN:
                self._fragments, self._fragments_opcode = bytearray(data), opcode
                return None
        else:
            assert self._fragments is not None
            self._fragments.extend(data)
            if not head & self.FIN:
                return None
            opcode, data = self._fragments_opcode, bytes(self._fragments)
            self._fragments = None
        if opcode == 0x1:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                self._abort()
                return None
            return self._run_callback(self.handler.on_message, text)
        return self._run_callback(self.handler.on_message, data)

    def _on_control(self, opcode: int, data: bytes) -> Future[None] | None:
        if opcode == 0x8:
            self.client_terminated = True
            if len(data) >= 2:
                self.close_code = struct.unpack(">H", data[:2])[0]
            if len(data) > 2:
                self.close_reason = data[2:].decode("utf-8", "replace")
            self.close(self.close_code)  # echo the peer's code (RFC 6455 §5.5.1)
            return None
        if opcode == 0x9:
            self._pong(data)
            return self._run_callback(self.handler.on_ping, data)
        self._received_pong = True
        return self._run_callback(self.handler.on_pong, data)

    def _finish(self) -> None:
        """The socket is over: tell the handler, once."""
        if not self._finished:
            self._finished = True
            self.handler.on_ws_connection_close(self.close_code, self.close_reason)

    # ------------------------------------------------------------------- writing
    def _pong(self, data: bytes) -> None:
        # RFC 6455 §5.5.3 lets us answer only the latest of several pings: while one pong
        # waits in the buffer, later pings only replace the one to answer next.
        if self._pong_queued is not None:
            self._pong_next = data
            return
        if self.server_terminated:
            return
        try:
            queued = send_or_queue(self.stream, frame_bytes(0xA, data))
        except StreamClosedError:
            self._abort()
            return
        if queued is not None:
            self._pong_queued = queued
            queued.add_done_callback(self._pong_sent)

    def _pong_sent(self, queued: Future[None]) -> None:
        self._pong_queued = None
        data, self._pong_next = self._pong_next, None
        if data is not None and not queued.cancelled() and queued.exception() is None:
            self._pong(data)

    def write_ping(self, data: bytes) -> None:
        send_or_queue(self.stream, frame_bytes(0x9, data))

    def _write_frame(self, fin: bool, opcode: int, data: bytes, flags: int = 0) -> Future[None]:
        # Tornado's writers (close, write_message) want a future; plp's go through
        # send_or_queue and skip it.
        queued = send_or_queue(self.stream, frame_bytes(opcode, data, fin, flags))
        if queued is None:
            queued = Future()
            queued.set_result(None)
        return queued


def frame_bytes(opcode: int, data: bytes, fin: bool = True, flags: int = 0) -> bytes:
    """One unmasked server frame (RFC 6455 §5.2)."""
    size = len(data)
    if opcode & _CONTROL and (not fin or size > 125):
        raise ValueError("control frames are whole and at most 125 bytes")
    first = (0x80 if fin else 0) | opcode | flags
    if size < 126:
        return bytes((first, size)) + data
    if size <= 0xFFFF:
        return struct.pack("!BBH", first, 126, size) + data
    return struct.pack("!BBQ", first, 127, size) + data


def send_or_queue(stream: IOStream, frame: bytes) -> Future[None] | None:
    """Write `frame`: with one `send()` when nothing is queued before it and the kernel
    takes it all (None: no buffer, no future), else what is left through the stream's
    buffer, so order is kept (the write's future). StreamClosedError if closed."""
    if stream.closed():
        raise StreamClosedError()
    if not stream.writing():
        try:
            sent = stream.socket.send(frame)
        except OSError:
            sent = 0  # would block; or an error the stream's own write meets and reports
        if sent == len(frame):
            return None
        if sent:
            return stream.write(memoryview(frame)[sent:])
    return stream.write(frame)


class _Vacant:
    """Stands in for an empty `collections.deque` of an idle stream.

    An empty deque is 760 bytes; a stream has two (its write buffer's and its write
    futures'), and an idle chat socket's stream almost never queues anything (frames go
    straight to the socket, see `send_or_queue`). The first `append` puts a real deque in
    the owner's attribute, and the stream goes on with that.
    """

    __slots__ = ("owner", "name")

    def __init__(self, owner: object, name: str) -> None:
        self.owner = owner
        self.name = name

    def append(self, item: Any) -> None:
        setattr(self.owner, self.name, collections.deque((item,)))

    def popleft(self) -> Any:
        raise IndexError("pop from an empty deque")

    def __getitem__(self, index: int) -> Any:
        raise IndexError("deque index out of range")

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Any:
        return iter(())

    def clear(self) -> None:
        pass


def slim_stream(stream: IOStream) -> None:
    """Swap the stream's empty deques for `_Vacant` stand-ins (left alone if Tornado's
    internals ever differ: each is swapped only if it is there and an empty deque)."""
    _swap(stream, "_write_futures")
    buffer = getattr(stream, "_write_buffer", None)
    if buffer is not None:
        _swap(buffer, "_buffers")


def _swap(owner: object, name: str) -> None:
    current = getattr(owner, name, None)
    if type(current) is collections.deque and not current:
        setattr(owner, name, _Vacant(owner, name))


def protocol_for(handler: WebSocketHandler, params: _WebSocketParams) -> FrameReader | None:
    """The protocol for a handshake asking for version 13 (the only one), else None."""
    if handler.request.headers.get("Sec-WebSocket-Version") != "13":
        return None
    return FrameReader(handler, params)
