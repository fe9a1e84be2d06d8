"""The storage interface: records, domain errors and the `Database` every backend implements.

Handlers and the chat hub only ever see `Database`; the SQL lives in one layer (`sql.py`,
the schema in `schema.py`) with a dialect per database (`sqlite.py`, `postgres.py`). Every
method is a coroutine so a network database can be truly asynchronous; the SQLite backend
answers inline because its indexed queries take microseconds (see docs/architecture.md,
"Database calls and the event loop").
"""

from __future__ import annotations

import abc
import datetime as _dt
from dataclasses import dataclass

ROLES = ("student", "teacher", "admin")
CHANNEL_KINDS = ("discussion", "announcement")
SCHEMA_VERSION = 6


class StorageError(Exception):
    """Base class of the domain errors storage raises."""


class UsernameTaken(StorageError):
    """A user with that username (case-insensitively) exists."""


class ChannelNameTaken(StorageError):
    """A channel with that name (case-insensitively) exists."""


class NotFound(StorageError):
    """The record asked for does not exist."""


class CannotOpen(StorageError):
    """The database cannot be opened or migrated (bad path, not a database, newer schema)."""


class DatabaseCorrupted(CannotOpen):
    """The database file failed its integrity check at start; the message says what to do."""


class UnstorableValue(StorageError):
    """A value the database cannot hold (NUL in PostgreSQL text, a lone surrogate): a 400."""


class StorageUnavailable(Exception):
    """The database cannot take or give the data now; the request gets 503, nothing is stored.

    Raised when PostgreSQL cannot be reached, and when the disk or the file fails: disk full,
    an I/O error, a read-only or corrupted file. The message names the cause in one line for
    the log. Not a StorageError: it says nothing about the request, which may be retried.
    """


def utcnow() -> _dt.datetime:
    """Aware UTC now, truncated to milliseconds like every stored timestamp."""
    now = _dt.datetime.now(_dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso(moment: _dt.datetime) -> str:
    """ISO-8601 UTC with a `Z`, the one timestamp format the API uses."""
    return moment.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def iso_from_epoch(seconds: float) -> str:
    """ISO-8601 UTC for a Unix timestamp."""
    return iso(_dt.datetime.fromtimestamp(seconds, _dt.UTC))


@dataclass(frozen=True, slots=True)
class User:
    """An account as handlers see it; never carries the password hash."""

    id: int
    username: str
    display_name: str
    role: str
    created_at: _dt.datetime
    disabled: bool = False
    # Unix seconds: sessions of this user created before it are over (a password reset,
    # also by the command line, sets it; see plp/auth/cutoff.py). 0: none cut off.
    sessions_from: float = 0.0

    def to_json(self, *, admin: bool = False) -> dict:
        data = {
            "id": self.id,
            "username": self.username,
            "displayName": self.display_name,
            "role": self.role,
            "createdAt": iso(self.created_at),
        }
        if admin:
            data["disabled"] = self.disabled
        return data


@dataclass(frozen=True, slots=True)
class Channel:
    """A chat channel."""

    id: int
    name: str
    description: str
    kind: str
    created_by: int | None
    created_at: _dt.datetime
    class_id: int | None = None  # the class it belongs to; None: school-wide (SPEC §12)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "createdBy": self.created_by,
            "createdAt": iso(self.created_at),
            "classId": self.class_id,
        }


@dataclass(frozen=True, slots=True)
class Message:
    """A stored chat message with its author's public fields."""

    id: int
    channel_id: int
    author_id: int
    author_username: str
    author_display_name: str
    author_role: str
    text: str
    created_at: _dt.datetime

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "channel": self.channel_id,
            "author": {
                "id": self.author_id,
                "username": self.author_username,
                "displayName": self.author_display_name,
                "role": self.author_role,
            },
            "text": self.text,
            "createdAt": iso(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One row of the audit log."""

    at: _dt.datetime
    event: str
    user_id: int | None
    username: str | None
    ip: str | None
    detail: dict
    count: int | None = None  # refusals a coalesced row stands for (shown as `detail.count`)

    def to_json(self) -> dict:
        return {
            "at": iso(self.at),
            "event": self.event,
            "userId": self.user_id,
            "username": self.username,
            "ip": self.ip,
            "detail": self.detail if self.count is None else {**self.detail, "count": self.count},
        }


class Database(abc.ABC):
    """Persistent records: users, channels, messages and the audit log."""

    @abc.abstractmethod
    async def migrate(self) -> None:
        """Create or upgrade the schema to SCHEMA_VERSION and ensure the `general` channel."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; the object is unusable afterwards."""

    # users
    @abc.abstractmethod
    async def create_user(
        self, username: str, display_name: str, role: str, password_hash: str
    ) -> User:
        """Insert a user; raise UsernameTaken if the lower-cased username exists."""

    @abc.abstractmethod
    async def get_user(self, user_id: int) -> User | None:
        """The user with that id, or None."""

    @abc.abstractmethod
    async def get_credentials(self, username: str) -> tuple[User, str] | None:
        """The user and password hash for a (lower-cased) username, or None."""

    @abc.abstractmethod
    async def list_users(self) -> list[User]:
        """Every user, by id."""

    @abc.abstractmethod
    async def delete_user(self, user_id: int) -> bool:
        """Remove a user that has nothing yet (undoes a registration); False if absent."""

    @abc.abstractmethod
    async def update_user(
        self,
        user_id: int,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        display_name: str | None = None,
    ) -> User:
        """Change role, disabled state and/or display name; NotFound if there is no such user."""

    @abc.abstractmethod
    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        """Replace a user's password hash; raise NotFound if there is no such user."""

    @abc.abstractmethod
    async def count_users(self) -> int:
        """How many users exist."""

    # channels
    @abc.abstractmethod
    async def create_channel(
        self,
        name: str,
        description: str,
        kind: str,
        created_by: int | None,
        class_id: int | None = None,
    ) -> Channel:
        """Insert a channel of a class (None: school-wide); ChannelNameTaken if the name
        (case-insensitively) exists in that scope; NotFound if the class does not exist."""

    @abc.abstractmethod
    async def get_channel(self, channel_id: int) -> Channel | None:
        """The channel with that id, or None."""

    @abc.abstractmethod
    async def list_channels(self) -> list[Channel]:
        """Every channel, by id."""

    @abc.abstractmethod
    async def delete_channel(self, channel_id: int) -> bool:
        """Delete a channel and its messages; False if it did not exist."""

    # messages
    @abc.abstractmethod
    async def add_message(self, channel_id: int, author: User, text: str) -> Message:
        """Store a message and commit; it is durable when this returns. NotFound: no channel."""

    @abc.abstractmethod
    async def list_messages(
        self, channel_id: int, *, before: int | None = None, limit: int = 50
    ) -> list[Message]:
        """The newest `limit` messages with id < before (no bound if None), oldest first."""

    @abc.abstractmethod
    async def get_message(self, message_id: int) -> Message | None:
        """The message with that id (with its author's public fields), or None."""

    @abc.abstractmethod
    async def delete_message(self, message_id: int) -> bool:
        """Delete one message and commit; False if it did not exist (or is already gone)."""

    # audit
    @abc.abstractmethod
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
        """Append an audit row (stamped `at`, default now); its id."""

    @abc.abstractmethod
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
        """Add `count` to the coalesced row of `key`, first creating it with these fields.

        One statement, atomic: processes sharing the database add to one row per key.
        """

    @abc.abstractmethod
    async def prune_audit(self, before: _dt.datetime, *, limit: int) -> int:
        """Delete up to `limit` of the oldest audit rows stamped before `before`; how many."""

    @abc.abstractmethod
    async def list_audit(self, limit: int = 100) -> list[AuditEvent]:
        """The newest `limit` audit rows, newest first."""
