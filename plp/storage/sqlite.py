"""SQLite backend of `Database` (stdlib sqlite3, WAL): the default single-host storage.

Queries run inline on the event loop. Each is one indexed statement that takes microseconds
in WAL mode, which is cheaper than a thread hand-off per call; the one thing that could
stall is a lock held by another process (`plp create-user` while the server runs), so the
busy timeout is kept short and the CLI's transactions are single statements.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from pathlib import Path

from .base import (
    SCHEMA_VERSION,
    AuditEvent,
    CannotOpen,
    Channel,
    ChannelNameTaken,
    Database,
    Message,
    NotFound,
    User,
    UsernameTaken,
    utcnow,
)
from .rows import (
    AUDIT_SELECT,
    MESSAGE_SELECT,
    USER_COLS,
    audit_from_row,
    channel_from_row,
    message_from_row,
    to_ms,
    user_from_row,
)

BUSY_TIMEOUT_MS = 2000
# Users kept between requests (see SQLiteDatabase.get_user); cleared whole when full.
USER_CACHE_MAX = 10_000

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE users (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        username      TEXT NOT NULL UNIQUE,
        display_name  TEXT NOT NULL,
        role          TEXT NOT NULL CHECK (role IN ('student', 'teacher', 'admin')),
        password_hash TEXT NOT NULL,
        disabled      INTEGER NOT NULL DEFAULT 0,
        created_at    INTEGER NOT NULL
    );
    CREATE TABLE channels (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        name        TEXT NOT NULL,
        name_key    TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        kind        TEXT NOT NULL CHECK (kind IN ('discussion', 'announcement')),
        created_by  INTEGER REFERENCES users(id),
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE messages (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        channel_id INTEGER NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
        author_id  INTEGER NOT NULL REFERENCES users(id),
        text       TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX messages_by_channel ON messages (channel_id, id);
    CREATE TABLE audit (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        at       INTEGER NOT NULL,
        event    TEXT NOT NULL,
        user_id  INTEGER,
        username TEXT,
        ip       TEXT,
        detail   TEXT NOT NULL DEFAULT '{}'
    );
    """,
    2: """
    ALTER TABLE audit ADD COLUMN tally_key TEXT;
    ALTER TABLE audit ADD COLUMN tally_count INTEGER;
    CREATE UNIQUE INDEX audit_by_tally_key ON audit (tally_key);
    CREATE INDEX audit_by_at ON audit (at);
    """,
}


class SQLiteDatabase(Database):
    """`Database` on one SQLite file in WAL mode."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves so each method is one
            # explicit transaction and nothing is left open between event-loop turns.
            self._conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash; only an OS crash or power loss can
            # drop the last commits. FULL would put an fsync on the event loop per chat message.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except (OSError, sqlite3.Error) as exc:
            # A bad --db path is an operator error: one clear line, not a traceback.
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise CannotOpen(f"cannot open the SQLite database {path!r}: {reason}") from None
        self._users: dict[int, User] = {}
        self._users_stamp: tuple[int, int] = (-1, -1)

    async def migrate(self) -> None:
        conn = self._conn
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CannotOpen(
                f"database schema {version} is newer than this plp ({SCHEMA_VERSION}); upgrade plp"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            # One script per migration, schema change and version bump in one transaction.
            try:
                conn.executescript(
                    "BEGIN IMMEDIATE;"
                    + MIGRATIONS[target]
                    + f";PRAGMA user_version={target};COMMIT;"
                )
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        conn.execute(
            "INSERT OR IGNORE INTO channels (name, name_key, description, kind, created_by, "
            "created_at) VALUES ('general', 'general', 'Everyone''s channel', 'discussion', "
            "NULL, ?)",
            (to_ms(utcnow()),),
        )

    async def close(self) -> None:
        self._conn.close()

    async def create_user(
        self, username: str, display_name: str, role: str, password_hash: str
    ) -> User:
        created = utcnow()
        try:
            cur = self._conn.execute(
                "INSERT INTO users (username, display_name, role, password_hash, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (username, display_name, role, password_hash, to_ms(created)),
            )
        except sqlite3.IntegrityError as exc:
            if "users.username" in str(exc):
                raise UsernameTaken(username) from None
            raise
        return User(cur.lastrowid, username, display_name, role, created, False)

    async def get_user(self, user_id: int) -> User | None:
        """The user record, read on every signed-in request.

        Records (immutable `User`s) are kept while the database is unchanged, so a busy
        user costs no row read per request. "Unchanged" is checked on every call and is
        strict: `total_changes` moves with any write on this connection and
        `PRAGMA data_version` with any commit by another connection or process (the CLI,
        another plp), so a role change or a disabling is seen by the very next request.
        """
        conn = self._conn
        stamp = (conn.total_changes, conn.execute("PRAGMA data_version").fetchone()[0])
        users = self._users
        if stamp != self._users_stamp:
            users.clear()
            self._users_stamp = stamp
        user = users.get(user_id)
        if user is not None:
            return user
        row = conn.execute(f"SELECT {USER_COLS} FROM users WHERE id = ?", (user_id,)).fetchone()
        if row is None:
            return None
        if len(users) >= USER_CACHE_MAX:
            users.clear()
        user = users[user_id] = user_from_row(row)
        return user

    async def get_credentials(self, username: str) -> tuple[User, str] | None:
        row = self._conn.execute(
            f"SELECT {USER_COLS}, password_hash FROM users WHERE username = ?", (username,)
        ).fetchone()
        return (user_from_row(row), row[6]) if row else None

    async def list_users(self) -> list[User]:
        return [
            user_from_row(r)
            for r in self._conn.execute(f"SELECT {USER_COLS} FROM users ORDER BY id")
        ]

    async def update_user(
        self, user_id: int, *, role: str | None = None, disabled: bool | None = None
    ) -> User:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if role is not None:
                conn.execute("UPDATE users SET role = ? WHERE id = ?", (role, user_id))
            if disabled is not None:
                conn.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user_id))
            row = conn.execute(f"SELECT {USER_COLS} FROM users WHERE id = ?", (user_id,)).fetchone()
            if row is None:
                raise NotFound(user_id)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return user_from_row(row)

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        cur = self._conn.execute(
            "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)
        )
        if cur.rowcount == 0:
            raise NotFound(user_id)

    async def count_users(self) -> int:
        return self._conn.execute("SELECT count(*) FROM users").fetchone()[0]

    async def create_channel(
        self, name: str, description: str, kind: str, created_by: int | None
    ) -> Channel:
        created = utcnow()
        try:
            cur = self._conn.execute(
                "INSERT INTO channels (name, name_key, description, kind, created_by, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (name, name.lower(), description, kind, created_by, to_ms(created)),
            )
        except sqlite3.IntegrityError as exc:
            if "channels.name_key" in str(exc):
                raise ChannelNameTaken(name) from None
            raise
        return Channel(cur.lastrowid, name, description, kind, created_by, created)

    async def get_channel(self, channel_id: int) -> Channel | None:
        row = self._conn.execute(
            "SELECT id, name, description, kind, created_by, created_at FROM channels WHERE id = ?",
            (channel_id,),
        ).fetchone()
        return channel_from_row(row) if row else None

    async def list_channels(self) -> list[Channel]:
        rows = self._conn.execute(
            "SELECT id, name, description, kind, created_by, created_at FROM channels ORDER BY id"
        )
        return [channel_from_row(r) for r in rows]

    async def delete_channel(self, channel_id: int) -> bool:
        cur = self._conn.execute("DELETE FROM channels WHERE id = ?", (channel_id,))
        return cur.rowcount > 0

    async def add_message(self, channel_id: int, author: User, text: str) -> Message:
        created = utcnow()
        try:
            cur = self._conn.execute(
                "INSERT INTO messages (channel_id, author_id, text, created_at) "
                "VALUES (?, ?, ?, ?)",
                (channel_id, author.id, text, to_ms(created)),
            )
        except sqlite3.IntegrityError:
            raise NotFound(channel_id) from None
        return Message(
            cur.lastrowid,
            channel_id,
            author.id,
            author.username,
            author.display_name,
            author.role,
            text,
            created,
        )

    async def list_messages(
        self, channel_id: int, *, before: int | None = None, limit: int = 50
    ) -> list[Message]:
        if before is None:
            rows = self._conn.execute(
                MESSAGE_SELECT + " WHERE m.channel_id = ? ORDER BY m.id DESC LIMIT ?",
                (channel_id, limit),
            ).fetchall()
        else:
            rows = self._conn.execute(
                MESSAGE_SELECT + " WHERE m.channel_id = ? AND m.id < ? ORDER BY m.id DESC LIMIT ?",
                (channel_id, before, limit),
            ).fetchall()
        return [message_from_row(r) for r in reversed(rows)]

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
        cur = self._conn.execute(
            "INSERT INTO audit (at, event, user_id, username, ip, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (to_ms(at or utcnow()), event, user_id, username, ip, json.dumps(detail)),
        )
        return cur.lastrowid

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
        self._conn.execute(
            "INSERT INTO audit (at, event, user_id, username, ip, detail, tally_key, tally_count) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tally_key) "
            "DO UPDATE SET tally_count = tally_count + excluded.tally_count",
            (to_ms(utcnow()), event, user_id, username, ip, json.dumps(detail), key, count),
        )

    async def prune_audit(self, before: _dt.datetime, *, limit: int) -> int:
        cur = self._conn.execute(
            "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ? ORDER BY at LIMIT ?)",
            (to_ms(before), limit),
        )
        return cur.rowcount

    async def list_audit(self, limit: int = 100) -> list[AuditEvent]:
        rows = self._conn.execute(AUDIT_SELECT + " ORDER BY id DESC LIMIT ?", (limit,))
        return [audit_from_row(r) for r in rows]
