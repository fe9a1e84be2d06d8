"""Reset-code storage on SQLite and real PostgreSQL: one code per user, tries and voiding,
an atomic single use (also when requests race on PostgreSQL's pool), the session cut-off."""

from __future__ import annotations

import asyncio
import datetime as _dt

import pytest

from plp.storage.base import NotFound
from plp.storage.sqlite import SQLiteDatabase
from tests.support import backends

NOW = _dt.datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=_dt.UTC)
LATER = NOW + _dt.timedelta(minutes=15)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path, io_loop):
    if request.param == "sqlite":
        database = SQLiteDatabase(str(tmp_path / "codes.sqlite3"))
        io_loop.run_sync(database.migrate)
        yield database
        io_loop.run_sync(database.close)
        return
    from plp.storage.postgres import PostgresDatabase

    base = backends.postgres_url()
    url, name = backends.fresh_postgres_database(base)
    database = PostgresDatabase(url, min_size=1, max_size=6)
    try:
        io_loop.run_sync(database.migrate)
        yield database
    finally:
        io_loop.run_sync(database.close)
        backends.drop_postgres_database(base, name)


async def kid(database):
    return await database.create_user("kid", "Kid", "student", "old-hash")


async def use(database, user_id: int, code_hash: str, now=NOW, password="new-hash") -> bool:
    return await database.use_reset_code(
        user_id, code_hash, now=now, max_tries=5, password_hash=password
    )


@pytest.mark.gen_test
async def test_one_code_per_user_and_a_newer_replaces_it(database):
    user = await kid(database)
    admin = await database.create_user("head", "Head", "admin", "h")
    assert await database.get_reset_code(user.id) is None
    await database.put_reset_code(user.id, "first", LATER, admin.id)
    await database.miss_reset_code(user.id, "first", 5)
    await database.put_reset_code(user.id, "second", LATER, admin.id)
    stored = await database.get_reset_code(user.id)
    assert (stored.code_hash, stored.tries, stored.issued_by) == ("second", 0, admin.id)
    assert stored.expires_at == LATER
    assert not await use(database, user.id, "first")
    assert await use(database, user.id, "second")
    assert await database.get_reset_code(user.id) is None
    with pytest.raises(NotFound):
        await database.put_reset_code(999, "x", LATER, None)


@pytest.mark.gen_test
async def test_use_sets_password_and_cut_off_once(database):
    user = await kid(database)
    await database.put_reset_code(user.id, "h1", LATER, None)
    assert not await use(database, user.id, "wrong")
    assert await use(database, user.id, "h1")
    assert not await use(database, user.id, "h1", password="other-hash")
    found = await database.get_credentials("kid")
    assert found is not None and found[1] == "new-hash"
    assert found[0].sessions_from == NOW.timestamp()
    assert (await database.get_user(user.id)).sessions_from == NOW.timestamp()


@pytest.mark.gen_test
async def test_expired_code_is_not_used(database):
    user = await kid(database)
    await database.put_reset_code(user.id, "h1", NOW, None)
    assert not await use(database, user.id, "h1", now=NOW)  # expiry is exclusive
    assert (await database.get_credentials("kid"))[1] == "old-hash"


@pytest.mark.gen_test
async def test_misses_count_and_the_fifth_voids(database):
    user = await kid(database)
    await database.put_reset_code(user.id, "h1", LATER, None)
    assert [await database.miss_reset_code(user.id, "h1", 5) for _ in range(4)] == [1, 2, 3, 4]
    assert await database.miss_reset_code(user.id, "other", 5) == 0  # a replaced code's miss
    assert (await database.get_reset_code(user.id)).tries == 4
    assert await database.miss_reset_code(user.id, "h1", 5) == 5
    assert await database.get_reset_code(user.id) is None
    assert not await use(database, user.id, "h1")


@pytest.mark.gen_test
async def test_racing_uses_succeed_once(database):
    user = await kid(database)
    for round_ in range(3):
        await database.put_reset_code(user.id, f"h{round_}", LATER, None)
        results = await asyncio.gather(
            *(use(database, user.id, f"h{round_}", password=f"p{i}") for i in range(6))
        )
        assert results.count(True) == 1, results


@pytest.mark.gen_test
async def test_cut_off_only_moves_forward(database):
    user = await kid(database)
    other = await database.create_user("other", "Other", "student", "h")
    assert await database.latest_sessions_cut() == 0.0
    assert await database.sessions_cut_since(0) == []
    await database.cut_sessions(user.id, NOW)
    await database.cut_sessions(user.id, NOW - _dt.timedelta(seconds=5))
    assert (await database.get_user(user.id)).sessions_from == NOW.timestamp()
    await database.set_password_and_cut_sessions(other.id, "h2", LATER)
    assert await database.sessions_cut_since(0) == [
        (user.id, NOW.timestamp()),
        (other.id, LATER.timestamp()),
    ]
    assert await database.sessions_cut_since(NOW.timestamp()) == [(other.id, LATER.timestamp())]
    assert await database.latest_sessions_cut() == LATER.timestamp()
    assert (await database.get_credentials("other"))[1] == "h2"
    with pytest.raises(NotFound):
        await database.set_password_and_cut_sessions(999, "h", NOW)


@pytest.mark.gen_test
async def test_deleting_a_user_deletes_their_code(database):
    user = await kid(database)
    await database.put_reset_code(user.id, "h1", LATER, None)
    assert await database.delete_user(user.id)
    assert await database.get_reset_code(user.id) is None
