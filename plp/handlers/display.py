"""How pages show machine values to people: timestamps and browser names."""

from __future__ import annotations

import datetime as _dt
import html
import re
from typing import Any

# Checked in order: Edge and Opera also say "Chrome", Chrome also says "Safari".
_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "Mac"),
    ("Macintosh", "Mac"),
    ("Linux", "Linux"),
)
_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def friendly_time(value: str, *, seconds: bool = False) -> str:
    """`2026-11-28T02:07:13.364Z` → `28 Nov 2026, 02:07 UTC` (other text unchanged)."""
    if not isinstance(value, str) or not _ISO.match(value):
        return value
    moment = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    clock = "%H:%M:%S" if seconds else "%H:%M"
    return f"{moment.day} {moment.strftime('%b %Y, ' + clock)} UTC"


def device_name(user_agent: str) -> str:
    """A short name for a User-Agent, like `Chrome on Linux`; '' when nothing is known."""
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), "")
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), "")
    if browser and system:
        return f"{browser} on {system}"
    return browser or system


def field_attrs(fields: dict[str, str], name: str) -> str:
    """` aria-invalid="true" aria-describedby="NAME-error"` when `name` has an error, else ''.

    The id matches the one templates/_field_error.html gives the message, so a screen reader
    reads the problem with the field. Field names are identifiers from our own code.
    """
    if name not in fields:
        return ""
    return f' aria-invalid="true" aria-describedby="{html.escape(name)}-error"'


# How audit detail keys read in words; unknown keys are shown as "key value".
_DETAIL_WORDS = {"by": "by", "role": "role", "path": "path", "limit": "limit", "reason": "reason"}


def audit_detail(detail: dict[str, Any]) -> str:
    """An audit row's detail in words: `{"path": "/x", "count": 12}` → `path /x, 12 times`."""
    if not isinstance(detail, dict):
        return str(detail)
    parts = []
    for key, value in detail.items():
        if key == "count":
            continue
        if isinstance(value, bool):
            parts.append(key.replace("_", " ") if value else "not " + key.replace("_", " "))
        else:
            parts.append(f"{_DETAIL_WORDS.get(key, key.replace('_', ' '))} {value}")
    count = detail.get("count", 1)
    if isinstance(count, int) and count != 1:
        parts.append(f"{count} times")
    return ", ".join(parts)
