"""The SQL layer: every `Database` method written once, for SQLite and PostgreSQL alike.

`SQLDatabase` holds the statements and the rules that turn database errors into domain
errors. A subclass per database (sqlite.py, postgres.py) brings the connection: how one
statement runs (`Statements`), a transaction, the migrations' bookkeeping, and which of its
driver's errors mean a fault of the storage (`_fault`), a collision on a unique column
(`_unique_key`) or a reference to a missing row (`_missing_reference`). What differs in the
SQL text itself is the small `Dialect` each one declares.

Statements are written with `?` placeholders; a dialect in another parameter style converts
them (`Dialect.sql`). Inserts are written without `RETURNING`: `Statements.insert` gives the
new row's id the database's own way.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging

from .base import (
    SCHEMA_VERSION,
    AuditEvent,
    CannotOpen,
    Channel,
    ChannelNameTaken,
    Message,
    NotFound,
    User,
    UsernameTaken,
    utcnow,
)
from .classes_sql import ClassSQL
from .passkeys_sql import PasskeySQL
from .reset_codes_sql import ResetCodeSQL
from .rows import (
    AUDIT_COLS,
    CHANNEL_COLS,
    MESSAGE_SELECT,
    USER_COLS,
    audit_from_row,
    channel_from_row,
    message_from_row,
    to_ms,
    user_from_row,
)
from .schema import CHANNEL_NAME_KEY, USERNAME_KEY
from .statements import SQLParts, Statements, reads, writes
from .store import Store
from .totp_sql import TotpSQL

log = logging.getLogger(__name__)


# Run by every start, after the migrations: the channel everyone has.
ENSURE_GENERAL = (
    "INSERT INTO channels (name, name_key, description, kind, created_by, created_at) "
    "VALUES ('general', 'general', 'Everyone''s channel', 'discussion', NULL, ?) "
    "ON CONFLICT (name_key) DO NOTHING"
)


def channel_key(name: str, class_id: int | None) -> str:
    """The stored unique key of a channel name: scoped to its class, or plain (school-wide).

    Channel names never hold "/", so a class's keys cannot meet a school-wide one.
    """
    key = name.lower()
    return key if class_id is None else f"{class_id}/{key}"


def pending(version: int) -> range:
    """The schema versions to apply to a database at `version`; CannotOpen if it is newer."""
    if version > SCHEMA_VERSION:
        raise CannotOpen(
            f"database schema {version} is newer than this plp ({SCHEMA_VERSION}); upgrade plp"
        )
    return range(version + 1, SCHEMA_VERSION + 1)


class SQLDatabase(ClassSQL, ResetCodeSQL, TotpSQL, PasskeySQL, SQLParts, Store):
    """`Database` on a SQL database; subclasses supply the connection and error rules."""

    async def _ensure_general(self, sql: Statements) -> None:
        await sql.execute(ENSURE_GENERAL, (to_ms(utcnow()),))

    # users

    @writes
    async def create_user(
        self, username: str, display_name: str, role: str, password_hash: str
    ) -> User:
        created = utcnow()
        try:
            user_id = await self._sql.insert(
                "INSERT INTO users (username, display_name, role, password_hash, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (username, display_name, role, password_hash, to_ms(created)),
            )
        except Exception as exc:
            if self._unique_key(exc) == USERNAME_KEY:
                raise UsernameTaken(username) from None
            raise
        return User(user_id, username, display_name, role, created, False)

    @reads
    async def get_user(self, user_id: int) -> User | None:
        return await self._read_user(user_id)

    async def _read_user(self, user_id: int) -> User | None:
        row = await self._sql.fetchone(f"SELECT {USER_COLS} FROM users WHERE id = ?", (user_id,))
        return user_from_row(row) if row else None

    @reads
    async def get_credentials(self, username: str) -> tuple[User, str] | None:
        row = await self._sql.fetchone(
            f"SELECT {USER_COLS}, password_hash FROM users WHERE username = ?", (username,)
        )
        return (user_from_row(row), row[-1]) if row else None

    @reads
    async def list_users(self) -> list[User]:
        rows = await self._sql.fetchall(f"SELECT {USER_COLS} FROM users ORDER BY id")
        return [user_from_row(r) for r in rows]

    @writes
    async def update_user(
        self,
        user_id: int,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        display_name: str | None = None,
    ) -> User:
        async with self._transaction() as sql:
            await sql.execute(
                "UPDATE users SET role = COALESCE(?, role), disabled = COALESCE(?, disabled), "
                "display_name = COALESCE(?, display_name) WHERE id = ?",
                (role, disabled, display_name, user_id),
            )
            row = await sql.fetchone(f"SELECT {USER_COLS} FROM users WHERE id = ?", (user_id,))
            if row is None:
                raise NotFound(user_id)
        return user_from_row(row)

    @writes
    async def delete_user(self, user_id: int) -> bool:
        return await self._sql.execute("DELETE FROM users WHERE id = ?", (user_id,)) > 0

    @writes
    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        changed = await self._sql.execute(
            "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)
        )
        if changed == 0:
            raise NotFound(user_id)

    @reads
    async def count_users(self) -> int:
        row = await self._sql.fetchone("SELECT count(*) FROM users")
        return int(row[0]) if row else 0

    # channels

    @writes
    async def create_channel(
        self,
        name: str,
        description: str,
        kind: str,
        created_by: int | None,
        class_id: int | None = None,
    ) -> Channel:
        created = utcnow()
        try:
            channel_id = await self._sql.insert(
                "INSERT INTO channels "
                "(name, name_key, description, kind, created_by, created_at, class_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    channel_key(name, class_id),
                    description,
                    kind,
                    created_by,
                    to_ms(created),
                    class_id,
                ),
            )
        except Exception as exc:
            if self._unique_key(exc) == CHANNEL_NAME_KEY:
                raise ChannelNameTaken(name) from None
            if self._missing_reference(exc):
                raise NotFound(class_id) from None
            raise
        return Channel(channel_id, name, description, kind, created_by, created, class_id)

    @reads
    async def get_channel(self, channel_id: int) -> Channel | None:
        row = await self._sql.fetchone(
            f"SELECT {CHANNEL_COLS} FROM channels WHERE id = ?", (channel_id,)
        )
        return channel_from_row(row) if row else None

    @reads
    async def list_channels(self) -> list[Channel]:
        rows = await self._sql.fetchall(f"SELECT {CHANNEL_COLS} FROM channels ORDER BY id")
        return [channel_from_row(r) for r in rows]

    @writes
    async def delete_channel(self, channel_id: int) -> bool:
        return await self._sql.execute("DELETE FROM channels WHERE id = ?", (channel_id,)) > 0

    # messages

    @writes
    async def add_message(self, channel_id: int, author: User, text: str) -> Message:
        created = utcnow()
        try:
            message_id = await self._sql.insert(
                "INSERT INTO messages (channel_id, author_id, text, created_at) "
                "VALUES (?, ?, ?, ?)",
                (channel_id, author.id, text, to_ms(created)),
            )
        except Exception as exc:
            if self._missing_reference(exc):
                raise NotFound(channel_id) from None
            raise
        return Message(
            message_id,
            channel_id,
            author.id,
            author.username,
            author.display_name,
            author.role,
            text,
            created,
        )

    @reads
    async def list_messages(
        self, channel_id: int, *, before: int | None = None, limit: int = 50
    ) -> list[Message]:
        if before is None:
            rows = await self._sql.fetchall(
                MESSAGE_SELECT + " WHERE m.channel_id = ? ORDER BY m.id DESC LIMIT ?",
                (channel_id, limit),
            )
        else:
            rows = await self._sql.fetchall(
                MESSAGE_SELECT + " WHERE m.channel_id = ? AND m.id < ? ORDER BY m.id DESC LIMIT ?",
                (channel_id, before, limit),
            )
        return [message_from_row(r) for r in reversed(rows)]

    @reads
    async def get_message(self, message_id: int) -> Message | None:
        row = await self._sql.fetchone(MESSAGE_SELECT + " WHERE m.id = ?", (message_id,))
        return message_from_row(row) if row else None

    @writes
    async def delete_message(self, message_id: int) -> bool:
        return await self._sql.execute("DELETE FROM messages WHERE id = ?", (message_id,)) > 0

    # audit

    @writes
    async def add_audit(
        self,
        event: str,
        *,
        user_id: int | None,
        username: str | None,
        ip: str | None,
        detail: dict,
        at: _dt.datetime | None = None,
    ) -> int:
        text = self.dialect.audit_text
        return await self._sql.insert(
            "INSERT INTO audit (at, event, user_id, username, ip, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (to_ms(at or utcnow()), event, user_id, text(username), text(ip), json.dumps(detail)),
        )

    @writes
    async def add_audit_tally(
        self,
        event: str,
        *,
        user_id: int | None,
        username: str | None,
        ip: str | None,
        detail: dict,
        key: str,
        count: int,
    ) -> None:
        # One statement, so processes sharing the database add to the same row.
        text = self.dialect.audit_text
        await self._sql.execute(
            "INSERT INTO audit (at, event, user_id, username, ip, detail, tally_key, tally_count) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tally_key) "
            "DO UPDATE SET tally_count = audit.tally_count + excluded.tally_count",
            (
                to_ms(utcnow()),
                event,
                user_id,
                text(username),
                text(ip),
                json.dumps(detail),
                key,
                count,
            ),
        )

    @writes
    async def prune_audit(self, before: _dt.datetime, *, limit: int) -> int:
        return await self._sql.execute(
            "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ? ORDER BY at LIMIT ?)",
            (to_ms(before), limit),
        )

    @reads
    async def list_audit(self, limit: int = 100) -> list[AuditEvent]:
        rows = await self._sql.fetchall(
            f"SELECT {AUDIT_COLS} FROM audit ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [audit_from_row(r) for r in rows]
