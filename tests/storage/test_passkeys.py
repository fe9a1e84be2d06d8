"""Passkey storage (`PasskeyStore`) on SQLite and real PostgreSQL, and the upgrade of a
database made before passkeys (schema 2) in place, keeping its rows."""

from __future__ import annotations

import pytest

from plp.storage.passkeys import PasskeyTaken
from plp.storage.sqlite import SQLiteDatabase
from tests.support import backends


@pytest.fixture
def pg_url():
    base = backends.postgres_url()
    url, name = backends.fresh_postgres_database(base)
    yield url
    backends.drop_postgres_database(base, name)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path, io_loop):
    if request.param == "sqlite":
        database = SQLiteDatabase(str(tmp_path / "passkeys.sqlite3"))
    else:
        from plp.storage.postgres import PostgresDatabase

        database = PostgresDatabase(request.getfixturevalue("pg_url"), min_size=1, max_size=2)
    io_loop.run_sync(database.migrate)
    yield database
    io_loop.run_sync(database.close)


async def add(database, user_id: int, credential: str, name: str = "Passkey"):
    return await database.add_passkey(
        user_id,
        credential_id=credential,
        public_key="pk-" + credential,
        sign_count=0,
        transports=("internal", "hybrid"),
        name=name,
    )


@pytest.mark.gen_test
async def test_passkeys_round_trip(database):
    alice = await database.create_user("alice", "Alice", "student", "h")
    bob = await database.create_user("bob", "Bob", "student", "h")
    handle = await database.passkey_handle(alice.id, "handle-a")
    assert await database.passkey_handle(alice.id, "another") == handle == "handle-a"
    first = await add(database, alice.id, "cred-1", "Laptop")
    second = await add(database, alice.id, "cred-2")
    assert first.transports == ("internal", "hybrid") and first.last_used_at is None
    assert await database.list_passkeys(alice.id) == [first, second]
    assert await database.list_passkeys(bob.id) == []
    assert await database.count_passkeys(alice.id) == 2
    assert await database.get_passkey(alice.id, first.id) == first
    assert await database.get_passkey(bob.id, first.id) is None
    assert await database.find_passkey("cred-1") == (first, "handle-a")
    assert await database.find_passkey("nope") is None
    with pytest.raises(PasskeyTaken):
        await add(database, bob.id, "cred-1")
    renamed = await database.rename_passkey(alice.id, first.id, "Old laptop")
    assert renamed is not None and renamed.name == "Old laptop"
    assert await database.rename_passkey(bob.id, first.id, "mine") is None
    assert not await database.delete_passkey(bob.id, first.id)
    assert await database.delete_passkey(alice.id, first.id)
    assert await database.count_passkeys(alice.id) == 1


@pytest.mark.gen_test
async def test_sign_count_is_compare_and_set(database):
    alice = await database.create_user("alice", "Alice", "student", "h")
    passkey = await add(database, alice.id, "cred")
    assert await database.record_passkey_use(passkey.id, 0, 3)
    assert not await database.record_passkey_use(passkey.id, 0, 4)  # a stale read loses
    stored = await database.get_passkey(alice.id, passkey.id)
    assert stored.sign_count == 3 and stored.last_used_at is not None


@pytest.mark.gen_test
async def test_deleting_a_user_deletes_their_passkeys(database):
    alice = await database.create_user("alice", "Alice", "student", "h")
    await database.passkey_handle(alice.id, "h-a")
    await add(database, alice.id, "cred")
    assert await database.delete_user(alice.id)
    assert await database.find_passkey("cred") is None


@pytest.mark.gen_test
async def test_sqlite_schema_2_upgrades_keeping_its_rows(tmp_path):
    import sqlite3

    from plp.storage.sqlite import SQLITE

    path = str(tmp_path / "v2.sqlite3")
    conn = sqlite3.connect(path)
    conn.executescript(
        SQLITE.migrations[1] + ";" + SQLITE.migrations[2] + ";PRAGMA user_version=2;"
    )
    conn.execute(
        "INSERT INTO users (username, display_name, role, password_hash, created_at) "
        "VALUES ('old', 'Old', 'teacher', 'h', 1000)"
    )
    conn.commit()
    conn.close()
    database = SQLiteDatabase(path)
    try:
        await database.migrate()
        user = (await database.get_credentials("old"))[0]
        await add(database, user.id, "cred")
        assert await database.count_passkeys(user.id) == 1
    finally:
        await database.close()


@pytest.mark.gen_test
async def test_postgres_schema_2_upgrades_keeping_its_rows(pg_url):
    import psycopg

    from plp.storage.postgres import POSTGRES, PostgresDatabase

    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE plp_schema_version (version INTEGER NOT NULL)")
        await conn.execute(POSTGRES.migrations[1])
        await conn.execute(POSTGRES.migrations[2])
        await conn.execute("INSERT INTO plp_schema_version (version) VALUES (2)")
        await conn.execute(
            "INSERT INTO users (username, display_name, role, password_hash, created_at) "
            "VALUES ('old', 'Old', 'teacher', 'h', 1000)"
        )
    database = PostgresDatabase(pg_url, min_size=1, max_size=2)
    try:
        await database.migrate()
        user = (await database.get_credentials("old"))[0]
        await add(database, user.id, "cred")
        with pytest.raises(PasskeyTaken):
            await add(database, user.id, "cred")
    finally:
        await database.close()
