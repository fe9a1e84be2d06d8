"""A database made before classes starts under today's plp with everything intact (issue 13).

The database is built the way the released code built it: schema scripts 1 and 2 applied
directly, then users (real bcrypt hashes), channels and messages written as rows, and a
sessions snapshot written by the snapshot code the way a graceful shutdown leaves it. A real
`python run.py` then starts on it, on SQLite and on PostgreSQL: it upgrades the schema in
place, the signed-in session still works, every channel is school-wide and keeps its
messages, and the new features work on the upgraded data.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient

from plp.auth.passwords import hash_password
from plp.sessions.cookie import CookieSigner
from plp.sessions.memory import MemorySessionStore
from plp.snapshot import save_sessions, snapshot_path
from plp.storage.base import SCHEMA_VERSION
from plp.storage.postgres import POSTGRES
from plp.storage.sqlite import SQLITE
from tests.support import PASSWORD, backends, body
from tests.support.client import Client
from tests.support.live import LIVE_SECRET, LiveServer

RELEASED = 2  # the schema version the code before classes wrote
T0 = 1_700_000_000_000
DEV_COOKIE = "plp_session"
DEFAULT_IDLE, DEFAULT_MAX_AGE = 1800, 86400


def _rows() -> list[tuple[str, tuple[Any, ...]]]:
    hashed = hash_password(PASSWORD, 4)  # what the released code stored
    return [
        (
            "INSERT INTO users (username, display_name, role, password_hash, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (name, name.title(), role, hashed, T0 + i),
        )
        for i, (name, role) in enumerate((("tess", "teacher"), ("kid", "student")), start=1)
    ] + [
        (
            "INSERT INTO channels (name, name_key, description, kind, created_by, created_at) "
            "VALUES ('general', 'general', 'Everyone''s channel', 'discussion', NULL, ?)",
            (T0,),
        ),
        (
            "INSERT INTO channels (name, name_key, description, kind, created_by, created_at) "
            "VALUES ('maths', 'maths', 'Sums', 'announcement', 1, ?)",
            (T0 + 3,),
        ),
        (
            "INSERT INTO messages (channel_id, author_id, text, created_at) VALUES (?, ?, ?, ?)",
            (2, 1, "homework: page 12", T0 + 4),
        ),
        (
            "INSERT INTO messages (channel_id, author_id, text, created_at) VALUES (?, ?, ?, ?)",
            (1, 2, "hello all", T0 + 5),
        ),
    ]


def _build_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for version in range(1, RELEASED + 1):
            conn.executescript(SQLITE.migrations[version])
        conn.execute(f"PRAGMA user_version={RELEASED}")
        for sql, params in _rows():
            conn.execute(sql, params)
    finally:
        conn.close()


def _build_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("CREATE TABLE plp_schema_version (version INTEGER NOT NULL)")
        for version in range(1, RELEASED + 1):
            conn.execute(POSTGRES.migrations[version])
            conn.execute("INSERT INTO plp_schema_version (version) VALUES (%s)", (version,))
        for sql, params in _rows():
            conn.execute(sql.replace("?", "%s"), params)


def _snapshot(data_dir: Path) -> str:
    """A snapshot holding one session of tess's, as a graceful shutdown writes it; the cookie."""
    store = MemorySessionStore(idle_timeout=DEFAULT_IDLE, max_age=DEFAULT_MAX_AGE, per_user=10)
    # A private loop, closed here: asyncio.run would unset the thread's loop, and the next
    # pytest-tornado test would then make one that is never closed (a leaked socket pair).
    loop = asyncio.new_event_loop()
    try:
        token, _ = loop.run_until_complete(
            store.create(1, ip="127.0.0.1", user_agent="old browser")
        )
    finally:
        loop.close()
    data_dir.mkdir(parents=True, exist_ok=True)
    assert save_sessions(store, snapshot_path(data_dir), LIVE_SECRET) == 1
    signer = CookieSigner(DEV_COOKIE, LIVE_SECRET, (), DEFAULT_MAX_AGE)
    return signer.sign(token)


@pytest.fixture(params=["sqlite", "postgres"])
def upgraded(request, tmp_path):
    """A live server started on a released-schema database with a sessions snapshot."""
    data_dir = tmp_path / "data"
    cookie = _snapshot(data_dir)
    env: dict[str, str] = {}
    if request.param == "sqlite":
        db = tmp_path / "old.sqlite3"
        _build_sqlite(db)
        env["PLP_DB"] = str(db)
        cleanup = None
    else:
        base = backends.postgres_url()
        url, name = backends.fresh_postgres_database(base)
        _build_postgres(url)
        env["PLP_DB"] = url

        def cleanup() -> None:
            backends.drop_postgres_database(base, name)

    server = LiveServer(data_dir, env=env).start()
    try:
        yield server, cookie, request.param, env["PLP_DB"]
    finally:
        server.stop()
        if cleanup is not None:
            cleanup()


def _version(kind: str, db: str) -> int:
    if kind == "sqlite":
        conn = sqlite3.connect(db)
        try:
            return conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(db) as conn:
        return conn.execute("SELECT max(version) FROM plp_schema_version").fetchone()[0]


@pytest.mark.gen_test(timeout=60)
async def test_released_database_starts_with_everything_intact(upgraded):
    server, cookie, kind, db = upgraded
    assert _version(kind, db) == SCHEMA_VERSION
    tess = Client(AsyncHTTPClient(), server.url)
    tess.cookies[DEV_COOKIE] = cookie
    # The session from the snapshot still signs tess in.
    r = await tess.fetch("/api/users/me")
    assert r.code == 200, r.body
    assert body(r)["user"]["username"] == "tess"
    r = await tess.fetch("/api/channels")
    channels = body(r)["channels"]
    assert [(c["id"], c["name"], c["kind"], c["classId"]) for c in channels] == [
        (1, "general", "discussion", None),
        (2, "maths", "announcement", None),
    ]
    # Every message is there, and every user can sign in with their password.
    kid = Client(AsyncHTTPClient(), server.url)
    r = await kid.fetch(
        "/api/auth/login", "POST", json_body={"username": "kid", "password": PASSWORD}
    )
    assert r.code == 200, r.body
    for channel_id, text in ((2, "homework: page 12"), (1, "hello all")):
        r = await kid.fetch(f"/api/channels/{channel_id}/messages")
        assert [m["text"] for m in body(r)["messages"]] == [text]
    # Classes work on the upgraded database; a class's own "maths" does not clash.
    r = await tess.fetch("/api/classes", "POST", json_body={"name": "5A"})
    assert r.code == 201, r.body
    made = body(r)["class"]
    r = await tess.fetch(
        "/api/channels", "POST", json_body={"name": "maths", "classId": made["id"]}
    )
    assert r.code == 201, r.body
    r = await kid.fetch("/api/classes/join", "POST", json_body={"code": made["joinCode"]})
    assert r.code == 200
    names = [(c["name"], c["classId"]) for c in body(await kid.fetch("/api/channels"))["channels"]]
    assert names == [("general", None), ("maths", None), ("maths", made["id"])]
