"""SQLite dialect of the SQL layer (stdlib sqlite3, WAL): the default single-host storage.

Queries run inline on the event loop. Each is one indexed statement that takes microseconds
in WAL mode, which is cheaper than a thread hand-off per call; the one thing that could
stall is a lock held by another process (`plp create-user` while the server runs), so the
busy timeout is kept short and the CLI's transactions are single statements. Running inline
also means a transaction's statements never yield to the loop, so no other request's
statement can land inside it on the shared connection.

Faults of the file or the disk (full, I/O error, read-only, corrupted, locked) surface as
`StorageUnavailable` naming the cause in one line, so a request gets 503 and a chat send
close 1013 instead of a 500 and a traceback. SQLite rolls the failed statement back, so
nothing is half-written. At start `migrate` runs `PRAGMA quick_check` and refuses a
corrupted file (`DatabaseCorrupted`, exit status 2).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

from .base import (
    CannotOpen,
    DatabaseCorrupted,
    StorageUnavailable,
    UnstorableValue,
    User,
)
from .sql import SQLDatabase, pending
from .statements import Dialect, Params, Row, Statements, reads, writes

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 2000
# Users kept between requests (see SQLiteDatabase.get_user); cleared whole when full.
USER_CACHE_MAX = 10_000

SQLITE = Dialect(
    "sqlite",
    types={
        "id_pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "bigint": "INTEGER",
        "bool": "INTEGER",
        "false": "0",
    },
)
# SQLITE_CONSTRAINT_FOREIGNKEY, the extended result code of a missing referenced row.
_FOREIGN_KEY_CODE = 787
_UNIQUE_FAILED = "UNIQUE constraint failed: "


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


class _Inline:
    """`Statements` on the one sqlite3 connection, run inline (autocommit between them)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return self._conn.execute(sql, params).fetchone()

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    async def execute(self, sql: str, params: Params = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    async def insert(self, sql: str, params: Params = ()) -> int:
        row_id = self._conn.execute(sql, params).lastrowid
        assert row_id is not None  # an INSERT of one row always sets it
        return row_id


class SQLiteDatabase(SQLDatabase):
    """`Database` on one SQLite file in WAL mode."""

    dialect = SQLITE

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
        self._sql = _Inline(self._conn)
        self._users: dict[int, User] = {}
        self._users_stamp: tuple[int, int] = (-1, -1)

    @writes
    async def migrate(self) -> None:
        conn = self._conn
        self.check_integrity()
        for target in pending(conn.execute("PRAGMA user_version").fetchone()[0]):
            # One script per migration, schema change and version bump in one transaction.
            try:
                conn.executescript(
                    "BEGIN IMMEDIATE;"
                    + SQLITE.migrations[target]
                    + f";PRAGMA user_version={target};COMMIT;"
                )
            except BaseException:
                _rollback(conn)
                raise
        await self._ensure_general(self._sql)

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

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Statements]:
        conn = self._conn
        # IMMEDIATE: the write lock from the start, so a read in the transaction stays true.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._sql
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def _fault(self, exc: Exception, action: str) -> Exception | None:
        if isinstance(exc, sqlite3.DatabaseError):
            cause = fault_cause(self.path, exc)
            return (
                None if cause is None else StorageUnavailable(f"database {action} failed: {cause}")
            )
        if isinstance(exc, UnicodeEncodeError | OverflowError):
            # A lone surrogate or an integer past 64 bits cannot be bound at all.
            return UnstorableValue(str(exc))
        return None

    def _unique_key(self, exc: Exception) -> str | None:
        message = str(exc)
        if isinstance(exc, sqlite3.IntegrityError) and message.startswith(_UNIQUE_FAILED):
            return message.removeprefix(_UNIQUE_FAILED)
        return None

    def _missing_reference(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and (
            getattr(exc, "sqlite_errorcode", None) == _FOREIGN_KEY_CODE
            or str(exc) == "FOREIGN KEY constraint failed"
        )

    @reads
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
        user = await self._read_user(user_id)
        if user is None:
            return None
        if len(users) >= USER_CACHE_MAX:
            users.clear()
        users[user_id] = user
        return user


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back an open transaction; SQLite may already have, after SQLITE_FULL or IOERR."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.warning("rollback failed: %s", exc)
