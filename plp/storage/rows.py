"""Row mapping of the SQL layer: timestamps are stored as epoch milliseconds and columns
selected in these orders, so a row becomes the same record on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence
from typing import Any

from .base import AuditEvent, Channel, Message, User

USER_COLS = "id, username, display_name, role, created_at, disabled, sessions_from"
CHANNEL_COLS = "id, name, description, kind, created_by, created_at, class_id"
AUDIT_COLS = "at, event, user_id, username, ip, detail, tally_count"
MESSAGE_SELECT = (
    "SELECT m.id, m.channel_id, m.author_id, u.username, u.display_name, u.role, m.text, "
    "m.created_at FROM messages m JOIN users u ON u.id = m.author_id"
)


def to_ms(moment: _dt.datetime) -> int:
    """Epoch milliseconds for a stored timestamp."""
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> _dt.datetime:
    """Aware UTC datetime for stored epoch milliseconds."""
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.UTC)


def user_from_row(row: Sequence[Any]) -> User:
    """A User from a row in USER_COLS order."""
    return User(
        id=row[0],
        username=row[1],
        display_name=row[2],
        role=row[3],
        created_at=from_ms(row[4]),
        disabled=bool(row[5]),
        sessions_from=row[6] / 1000,
    )


def channel_from_row(row: Sequence[Any]) -> Channel:
    """A Channel from a row in CHANNEL_COLS order."""
    return Channel(
        id=row[0],
        name=row[1],
        description=row[2],
        kind=row[3],
        created_by=row[4],
        created_at=from_ms(row[5]),
        class_id=row[6],
    )


def message_from_row(row: Sequence[Any]) -> Message:
    """A Message from a row of MESSAGE_SELECT."""
    return Message(
        id=row[0],
        channel_id=row[1],
        author_id=row[2],
        author_username=row[3],
        author_display_name=row[4],
        author_role=row[5],
        text=row[6],
        created_at=from_ms(row[7]),
    )


def audit_from_row(row: Sequence[Any]) -> AuditEvent:
    """An AuditEvent from a row in AUDIT_COLS order (`detail` is stored as JSON text)."""
    return AuditEvent(
        at=from_ms(row[0]),
        event=row[1],
        user_id=row[2],
        username=row[3],
        ip=row[4],
        detail=json.loads(row[5]),
        count=row[6],
    )
