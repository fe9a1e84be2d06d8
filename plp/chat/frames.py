"""Client frames of the chat protocol (SPEC §8): parsing and field checks, and the errors
that refuse a frame. No hub, no database: plp/chat/connection.py acts on what passes."""

from __future__ import annotations

import json
import re
from typing import Any

from ..storage.base import User

ID_MAX = 2**63 - 1  # the largest id a 64-bit signed column holds
TEXT_MAX = 2000
CLIENT_ID_MAX = 64
REF_MAX = 64
# NUL cannot be stored by PostgreSQL and lone surrogates cannot be encoded as UTF-8.
UNSTORABLE_RE = re.compile(r"[\x00\ud800-\udfff]")
SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


class FrameError(Exception):
    """A client frame refused with an `error` frame (code, message, ref)."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


def public_user(user: User) -> dict[str, Any]:
    """The fields other chat users see: {id, username, displayName, role}."""
    return {
        "id": user.id,
        "username": user.username,
        "displayName": user.display_name,
        "role": user.role,
    }


def parse_frame(message: str) -> dict[str, Any]:
    """A client frame as a flat JSON object, or FrameError `bad_request` (SPEC §8).

    Every frame of the protocol is one object whose values are strings, numbers, booleans or
    null; nested values are refused before anything looks at them (which also keeps `[[[...`
    from reaching the recursion limit anywhere later).
    """
    try:
        data = json.loads(message)
    except (ValueError, RecursionError):
        raise FrameError("bad_request", "Frames must be JSON objects.") from None
    if not isinstance(data, dict):
        raise FrameError("bad_request", "Frames must be JSON objects.")
    if any(isinstance(value, (dict, list)) for value in data.values()):
        raise FrameError("bad_request", "Frame fields must be strings, numbers, booleans or null.")
    return data


def has_lone_surrogate(message: str, data: dict[str, Any]) -> bool:
    """True if any key or string of the frame holds a lone surrogate (`"\\ud800"`).

    Such a string parses, but can be neither stored, published nor echoed as UTF-8. Tornado
    decodes text frames as strict UTF-8, so only a `\\u` escape can make one.
    """
    return "\\u" in message and any(
        isinstance(text, str) and SURROGATE_RE.search(text) is not None
        for text in (*data.keys(), *data.values())
    )


def frame_ref(data: dict[str, Any], kind: str) -> str:
    """The `ref` of an error about a frame: a send's valid clientId, else its type."""
    client_id = data.get("clientId")
    if (
        kind == "send"
        and isinstance(client_id, str)
        and len(client_id) <= CLIENT_ID_MAX
        and not SURROGATE_RE.search(client_id)
    ):
        return client_id
    return kind


def channel_field(data: dict[str, Any], ref: str | None) -> int:
    """The frame's `channel` as an id, or FrameError `bad_request`."""
    value = data.get("channel")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= ID_MAX:
        raise FrameError("bad_request", "`channel` must be a channel id (a positive integer).", ref)
    return value


def text_field(data: dict[str, Any], ref: str) -> str:
    """A send's `text`, stripped and checked for length and storability; or FrameError."""
    text = data.get("text")
    if not isinstance(text, str):
        raise FrameError("bad_request", "`text` must be a string.", ref)
    text = text.strip()
    if not text:
        raise FrameError("bad_request", "The message is empty.", ref)
    if len(text) > TEXT_MAX:
        raise FrameError("too_long", f"Messages are at most {TEXT_MAX} characters.", ref)
    if UNSTORABLE_RE.search(text):
        raise FrameError(
            "bad_request", "The message contains characters that cannot be stored.", ref
        )
    return text
