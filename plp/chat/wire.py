"""WebSocket wire encoding for fan-out: one server text frame built once per event.

Server-to-client frames are unmasked (RFC 6455 §5.1), so the bytes of a frame are the same
for every recipient; building them once and writing them straight to each connection's
stream skips the per-socket JSON encoding, framing and task that `write_message` costs.
Only valid without permessage-deflate, which plp never negotiates.
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81


def text_frame(text: str) -> bytes:
    """A complete, final, unmasked text frame carrying `text` as UTF-8.

    A lone surrogate (which client frames are refused for holding) would make the strict
    encode raise and cost the recipient its socket; it goes out as `?` instead.
    """
    try:
        payload = text.encode("utf-8")
    except UnicodeEncodeError:
        payload = text.encode("utf-8", "replace")
    size = len(payload)
    if size < 126:
        header = bytes((_FIN_TEXT, size))
    elif size <= 0xFFFF:
        header = struct.pack("!BBH", _FIN_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, size)
    return header + payload
