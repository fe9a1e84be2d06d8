"""The TOTP records (plp/storage/totp_sql.py) on SQLite and real PostgreSQL: pending then
active, a step taken once (also by concurrent writers), recovery codes used once, removal,
and a database made at schema 2 (before authenticator apps) upgraded in place."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from plp.storage.sqlite import SQLiteDatabase
from tests.support import backends


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path, io_loop):
    if request.param == "sqlite":
        database = SQLiteDatabase(str(tmp_path / "storage.sqlite3"))
    else:
        from plp.storage.postgres import PostgresDatabase

        base = backends.postgres_url()
        url, name = backends.fresh_postgres_database(base)
        database = PostgresDatabase(url, min_size=1, max_size=8)
    io_loop.run_sync(database.migrate)
    yield database
    io_loop.run_sync(database.close)
    if request.param == "postgres":
        backends.drop_postgres_database(base, name)


async def _user(database, name: str = "tess"):
    return await database.create_user(name, name.title(), "teacher", "hash-of-" + name)


@pytest.mark.gen_test
async def test_pending_then_active_then_steps_taken_once(database):
    user = await _user(database)
    assert await database.get_totp(user.id) is None
    assert await database.start_totp(user.id, "sealed-1")
    assert await database.start_totp(user.id, "sealed-2")  # a pending one is replaced
    record = await database.get_totp(user.id)
    assert (record.sealed_secret, record.active, record.last_step) == ("sealed-2", False, None)
    assert not await database.use_totp_step(user.id, 10)  # not active: no step taken
    assert await database.activate_totp(user.id, 10, ["h1", "h2"])
    assert not await database.activate_totp(user.id, 11, ["h3"])  # already active
    assert not await database.start_totp(user.id, "sealed-3")  # active kept as it is
    record = await database.get_totp(user.id)
    assert (record.sealed_secret, record.active, record.last_step) == ("sealed-2", True, 10)
    assert not await database.use_totp_step(user.id, 10)  # the confirming step: used
    assert not await database.use_totp_step(user.id, 9)  # older: refused
    assert await database.use_totp_step(user.id, 12)
    assert not await database.use_totp_step(user.id, 11)
    assert (await database.get_totp(user.id)).last_step == 12
    assert await database.reseal_totp(user.id, "sealed-2", "sealed-2b")
    assert not await database.reseal_totp(user.id, "sealed-2", "sealed-2c")
    assert (await database.get_totp(user.id)).sealed_secret == "sealed-2b"


@pytest.mark.gen_test
async def test_recovery_codes_are_single_use_and_per_user(database):
    tess, kid = await _user(database), await _user(database, "kid")
    for user in (tess, kid):
        await database.start_totp(user.id, "s")
        await database.activate_totp(user.id, 1, ["a", "b", "c"])
    assert await database.count_recovery_codes(tess.id) == 3
    assert await database.use_recovery_code(tess.id, "b")
    assert not await database.use_recovery_code(tess.id, "b")
    assert not await database.use_recovery_code(tess.id, "zzz")
    assert await database.count_recovery_codes(tess.id) == 2
    assert await database.count_recovery_codes(kid.id) == 3  # another user's are untouched
    assert await database.delete_totp(tess.id)
    assert not await database.delete_totp(tess.id)
    assert await database.get_totp(tess.id) is None
    assert await database.count_recovery_codes(tess.id) == 0
    # Removing a user removes their authenticator with them.
    assert await database.delete_user(kid.id)
    assert await database.get_totp(kid.id) is None


@pytest.mark.gen_test
async def test_concurrent_uses_of_one_step_or_code_let_exactly_one_through(database):
    user = await _user(database)
    await database.start_totp(user.id, "s")
    await database.activate_totp(user.id, 1, ["only"])
    for step in (5, 6, 7):
        taken = await asyncio.gather(*(database.use_totp_step(user.id, step) for _ in range(8)))
        assert sorted(taken) == [False] * 7 + [True]
    used = await asyncio.gather(*(database.use_recovery_code(user.id, "only") for _ in range(8)))
    assert sorted(used) == [False] * 7 + [True]


@pytest.mark.gen_test
async def test_a_schema_2_database_upgrades_keeping_its_rows(tmp_path):
    # What the code before authenticator apps made: the first two scripts, and a user.
    from plp.storage.sqlite import SQLITE

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(SQLITE.migrations[1] + SQLITE.migrations[2])
    conn.execute("PRAGMA user_version=2")
    conn.execute(
        "INSERT INTO users (username, display_name, role, password_hash, created_at) "
        "VALUES ('tess', 'Tess', 'teacher', 'h', 1)"
    )
    conn.close()
    database = SQLiteDatabase(str(path))
    await database.migrate()
    try:
        (user,) = await database.list_users()
        assert user.username == "tess"
        assert await database.start_totp(user.id, "s")
        assert await database.activate_totp(user.id, 3, ["h"])
    finally:
        await database.close()
