"""SQLite backend of `Database` (stdlib sqlite3, WAL): the default single-host storage.

Queries run inline on the event loop. Each is one indexed statement that takes microseconds
in WAL mode, which is cheaper than a thread hand-off per call; the one thing that could
stall is a lock held by another process (`plp create-user` while the server runs), so the
busy timeout is kept short and the CLI's transactions are single statements.

Faults of the file or the disk (full, I/O error, read-only, corrupted, locked) surface as
`StorageUnavailable` naming the cause in one line, so a request gets 503 and a chat send
close 1013 instead of a 500 and a traceback. SQLite rolls the failed statement back, so
nothing is half-written. At start `migrate` runs `PRAGMA quick_check` and refuses a
corrupted file (`DatabaseCorrupted`, exit status 2).
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from .base import (
    SCHEMA_VERSION,
    AuditEvent,
    CannotOpen,
    Channel,
    ChannelNameTaken,
    Database,
    DatabaseCorrupted,
    Message,
    NotFound,
    StorageUnavailable,
    UnstorableValue,
    User,
    UsernameTaken,
    utcnow,
)
from .rows import (
    MESSAGE_SELECT,
    USER_COLS,
    channel_from_row,
    from_ms,
    message_from_row,
    to_ms,
    user_from_row,
)

log = logging.getLogger(__name__)

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
    # The retention pruner deletes by time.
    2: "CREATE INDEX audit_by_at ON audit (at);",
}


# Primary result codes (sqlite3.h) that blame the file or the disk, not the request.
_CORRUPT_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB
_FAULT_CAUSES = {
    5: "the database is locked by another process",  # SQLITE_BUSY
    6: "the database is locked",  # SQLITE_LOCKED
    7: "out of memory",  # SQLITE_NOMEM
    8: "the database file is read-only",  # SQLITE_READONLY
    10: "disk I/O error",  # SQLITE_IOERR
    13: "disk full",  # SQLITE_FULL
    14: "cannot open a database file",  # SQLITE_CANTOPEN
    15: "file locking failed",  # SQLITE_PROTOCOL
    26: "the file is not a SQLite database",  # SQLITE_NOTADB, without the SQLite header
}
# Older sqlite3 modules do not set sqlite_errorcode; these messages say the same.
_FAULT_MESSAGES = {
    "database or disk is full": 13,
    "disk i/o error": 10,
    "database disk image is malformed": 11,
    "file is not a database": 26,
    "attempt to write a readonly database": 8,
    "database is locked": 5,
    "unable to open database file": 14,
}
_ERROR_NAMES = {5: "SQLITE_BUSY", 8: "SQLITE_READONLY", 10: "SQLITE_IOERR", 11: "SQLITE_CORRUPT"}
_ERROR_NAMES.update({13: "SQLITE_FULL", 14: "SQLITE_CANTOPEN", 26: "SQLITE_NOTADB"})
RESTORE_HINT = "restore it from a backup (docs/deploy.md)"
SQLITE_HEADER = b"SQLite format 3\x00"


def _result_code(exc: sqlite3.Error) -> tuple[int | None, str]:
    """(primary result code, error name) of a sqlite3 error; (None, "") if it has none."""
    code = getattr(exc, "sqlite_errorcode", None)
    name = getattr(exc, "sqlite_errorname", None) or ""
    if code is None:
        code = _FAULT_MESSAGES.get(str(exc).lower())
        name = _ERROR_NAMES.get(code, "") if code is not None else ""
    return (None if code is None else code & 0xFF), name


def _looks_like_sqlite(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def corruption(path: str, exc: sqlite3.Error) -> str | None:
    """The operator's line for a corrupted file, or None when `exc` is not about corruption.

    "Not a database" for a file without the SQLite header is a wrong --db, not damage.
    """
    code, name = _result_code(exc)
    if code not in _CORRUPT_CODES or (code == 26 and not _looks_like_sqlite(path)):
        return None
    return f"the database file {path} is corrupted: {exc} ({name}); {RESTORE_HINT}"


def fault_cause(path: str, exc: sqlite3.Error) -> str | None:
    """What is wrong with the file or disk, e.g. 'disk full (SQLITE_FULL)'; None if nothing.

    Errors about the statement itself (a constraint, a syntax error) give None: they are
    bugs or domain errors, not faults of the storage.
    """
    corrupted = corruption(path, exc)
    if corrupted is not None:
        return corrupted
    code, name = _result_code(exc)
    cause = _FAULT_CAUSES.get(code) if code is not None else None
    return None if cause is None else f"{cause} ({name or code})"


P = ParamSpec("P")
R = TypeVar("R")


def guarded(
    action: str,
) -> Callable[
    [Callable[Concatenate[SQLiteDatabase, P], Awaitable[R]]],
    Callable[Concatenate[SQLiteDatabase, P], Awaitable[R]],
]:
    """Map faults of the file or disk during a `read` or `write` to `StorageUnavailable`."""

    def decorate(
        method: Callable[Concatenate[SQLiteDatabase, P], Awaitable[R]],
    ) -> Callable[Concatenate[SQLiteDatabase, P], Awaitable[R]]:
        @functools.wraps(method)
        async def wrapper(self: SQLiteDatabase, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(self, *args, **kwargs)
            except sqlite3.DatabaseError as exc:
                cause = fault_cause(self.path, exc)
                if cause is None:
                    raise
                raise StorageUnavailable(f"database {action} failed: {cause}") from exc
            except (UnicodeEncodeError, OverflowError) as exc:
                # A lone surrogate or an integer past 64 bits cannot be bound at all.
                raise UnstorableValue(str(exc)) from exc

        return wrapper

    return decorate


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
            if isinstance(exc, sqlite3.Error):
                corrupted = corruption(path, exc)
                if corrupted is not None:
                    raise DatabaseCorrupted(corrupted) from None
                reason = fault_cause(path, exc) or str(exc)
            else:
                reason = exc.strerror or str(exc)
            raise CannotOpen(f"cannot open the SQLite database {path!r}: {reason}") from None
        self._users: dict[int, User] = {}
        self._users_stamp: tuple[int, int] = (-1, -1)

    @guarded("write")
    async def migrate(self) -> None:
        conn = self._conn
        self.check_integrity()
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
                _rollback(conn)
                raise
        conn.execute(
            "INSERT OR IGNORE INTO channels (name, name_key, description, kind, created_by, "
            "created_at) VALUES ('general', 'general', 'Everyone''s channel', 'discussion', "
            "NULL, ?)",
            (to_ms(utcnow()),),
        )

    def check_integrity(self) -> None:
        """Raise DatabaseCorrupted unless `PRAGMA quick_check` finds the file sound.

        quick_check reads every page once (about a second per few hundred MB) but skips
        the index-content checks of integrity_check, so it is cheap enough for each start.
        """
        try:
            rows = self._conn.execute("PRAGMA quick_check(3)").fetchall()
        except sqlite3.DatabaseError as exc:
            corrupted = corruption(self.path, exc)
            if corrupted is not None:
                raise DatabaseCorrupted(corrupted) from None
            raise
        # SQLite reports "*** in database main ***" and one problem per line: made one line.
        found = " ".join(str(row[0]) for row in rows if row[0] != "ok")
        found = " ".join(found.replace("*** in database main ***", "").split())
        if found:
            if len(found) > 300:
                found = found[:300] + "..."
            raise DatabaseCorrupted(
                f"the database file {self.path} is corrupted: {found}; {RESTORE_HINT}"
            )

    async def close(self) -> None:
        try:
            self._conn.close()
        except sqlite3.Error as exc:
            # The final checkpoint can fail on a full disk; the WAL keeps the data for the
            # next start, so this is worth a line, not a traceback.
            log.warning("closing the database: %s", fault_cause(self.path, exc) or exc)

    @guarded("write")
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

    @guarded("read")
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

    @guarded("read")
    async def get_credentials(self, username: str) -> tuple[User, str] | None:
        row = self._conn.execute(
            f"SELECT {USER_COLS}, password_hash FROM users WHERE username = ?", (username,)
        ).fetchone()
        return (user_from_row(row), row[6]) if row else None

    @guarded("read")
    async def list_users(self) -> list[User]:
        return [
            user_from_row(r)
            for r in self._conn.execute(f"SELECT {USER_COLS} FROM users ORDER BY id")
        ]

    @guarded("write")
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
            _rollback(conn)
            raise
        return user_from_row(row)

    @guarded("write")
    async def delete_user(self, user_id: int) -> bool:
        cur = self._conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
        return cur.rowcount > 0

    @guarded("write")
    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        cur = self._conn.execute(
            "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)
        )
        if cur.rowcount == 0:
            raise NotFound(user_id)

    @guarded("read")
    async def count_users(self) -> int:
        return self._conn.execute("SELECT count(*) FROM users").fetchone()[0]

    @guarded("write")
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

    @guarded("read")
    async def get_channel(self, channel_id: int) -> Channel | None:
        row = self._conn.execute(
            "SELECT id, name, description, kind, created_by, created_at FROM channels WHERE id = ?",
            (channel_id,),
        ).fetchone()
        return channel_from_row(row) if row else None

    @guarded("read")
    async def list_channels(self) -> list[Channel]:
        rows = self._conn.execute(
            "SELECT id, name, description, kind, created_by, created_at FROM channels ORDER BY id"
        )
        return [channel_from_row(r) for r in rows]

    @guarded("write")
    async def delete_channel(self, channel_id: int) -> bool:
        cur = self._conn.execute("DELETE FROM channels WHERE id = ?", (channel_id,))
        return cur.rowcount > 0

    @guarded("write")
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

    @guarded("read")
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

    @guarded("write")
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

    @guarded("write")
    async def set_audit_count(self, row_id: int, count: int) -> None:
        conn = self._conn
        row = conn.execute("SELECT detail FROM audit WHERE id = ?", (row_id,)).fetchone()
        if row is not None:
            detail = {**json.loads(row[0]), "count": count}
            conn.execute("UPDATE audit SET detail = ? WHERE id = ?", (json.dumps(detail), row_id))

    @guarded("write")
    async def prune_audit(self, before: _dt.datetime, *, limit: int) -> int:
        cur = self._conn.execute(
            "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ? ORDER BY at LIMIT ?)",
            (to_ms(before), limit),
        )
        return cur.rowcount

    @guarded("read")
    async def list_audit(self, limit: int = 100) -> list[AuditEvent]:
        rows = self._conn.execute(
            "SELECT at, event, user_id, username, ip, detail FROM audit ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [AuditEvent(from_ms(r[0]), r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back an open transaction; SQLite may already have, after SQLITE_FULL or IOERR."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.warning("rollback failed: %s", exc)
