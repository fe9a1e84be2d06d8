"""One suite for every `Database` backend: SQLite and real PostgreSQL give identical records."""

from __future__ import annotations

import asyncio
import datetime as _dt

import pytest

from plp.storage import open_database
from plp.storage.base import (
    CannotOpen,
    ChannelNameTaken,
    NotFound,
    StorageUnavailable,
    User,
    UsernameTaken,
)
from plp.storage.sqlite import SQLiteDatabase
from tests.support import backends


@pytest.fixture
def pg_database(io_loop):
    """A fresh, empty PostgreSQL database for one test: (url, make) with make() -> migrated db."""
    base = backends.postgres_url()
    url, name = backends.fresh_postgres_database(base)
    opened = []

    def make():
        from plp.storage.postgres import PostgresDatabase

        database = PostgresDatabase(url, min_size=1, max_size=4)
        opened.append(database)
        return database

    yield url, make
    for database in opened:
        io_loop.run_sync(database.close)
    backends.drop_postgres_database(base, name)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path, io_loop):
    if request.param == "sqlite":
        database = SQLiteDatabase(str(tmp_path / "storage.sqlite3"))
        io_loop.run_sync(database.migrate)
        yield database
        io_loop.run_sync(database.close)
        return
    _, make = request.getfixturevalue("pg_database")
    database = make()
    io_loop.run_sync(database.migrate)
    yield database


async def _user(database, name: str = "alice", role: str = "student") -> User:
    return await database.create_user(name, name.title(), role, "hash-of-" + name)


def _is_ms_utc(moment: _dt.datetime) -> bool:
    return (
        moment.tzinfo is not None
        and moment.utcoffset() == _dt.timedelta(0)
        and (moment.microsecond % 1000 == 0)
    )


@pytest.mark.gen_test
async def test_migrate_makes_general_once(database):
    await database.migrate()
    await database.migrate()
    channels = await database.list_channels()
    assert [(c.name, c.kind, c.created_by) for c in channels] == [("general", "discussion", None)]
    assert channels[0].description == "Everyone's channel"


@pytest.mark.gen_test
async def test_users_round_trip(database):
    alice = await _user(database, "alice")
    bob = await _user(database, "bob", "teacher")
    assert alice.id != bob.id
    assert _is_ms_utc(alice.created_at)
    assert await database.get_user(alice.id) == alice
    assert await database.get_user(bob.id) == bob
    assert await database.get_user(999_999) is None
    user, hashed = await database.get_credentials("bob")
    assert (user, hashed) == (bob, "hash-of-bob")
    assert await database.get_credentials("nobody") is None
    assert await database.list_users() == [alice, bob]
    assert await database.count_users() == 2


@pytest.mark.gen_test
async def test_usernames_are_unique(database):
    await _user(database, "alice")
    with pytest.raises(UsernameTaken):
        await _user(database, "alice")
    assert await database.count_users() == 1
    # The failed insert left the database usable.
    await _user(database, "alice2")
    assert await database.count_users() == 2


@pytest.mark.gen_test
async def test_display_names_and_text_kept_as_typed(database):
    shown = "Zoë <b>&amp; 'q' \"d\" 🎒"
    user = await database.create_user("zoe", shown, "student", "h")
    assert (await database.get_user(user.id)).display_name == shown
    channel = (await database.list_channels())[0]
    text = "línea 1\nline 2 \t ✓ <script>alert(1)</script> 100% %s %(x)s ''"
    message = await database.add_message(channel.id, user, text)
    assert (await database.list_messages(channel.id))[0].text == text
    assert message.text == text


@pytest.mark.gen_test
async def test_update_user(database):
    alice = await _user(database)
    changed = await database.update_user(alice.id, role="teacher")
    assert (changed.role, changed.disabled) == ("teacher", False)
    changed = await database.update_user(alice.id, disabled=True)
    assert (changed.role, changed.disabled) == ("teacher", True)
    changed = await database.update_user(alice.id, role="admin", disabled=False)
    assert (changed.role, changed.disabled) == ("admin", False)
    assert await database.get_user(alice.id) == changed
    assert await database.update_user(alice.id) == changed
    with pytest.raises(NotFound):
        await database.update_user(999_999, role="admin")


@pytest.mark.gen_test
async def test_set_password_hash(database):
    alice = await _user(database)
    await database.set_password_hash(alice.id, "new-hash")
    assert (await database.get_credentials("alice"))[1] == "new-hash"
    with pytest.raises(NotFound):
        await database.set_password_hash(999_999, "x")


@pytest.mark.gen_test
async def test_channels(database):
    teacher = await _user(database, "tess", "teacher")
    maths = await database.create_channel("Maths", "Sums", "announcement", teacher.id)
    assert _is_ms_utc(maths.created_at)
    assert await database.get_channel(maths.id) == maths
    assert await database.get_channel(999_999) is None
    with pytest.raises(ChannelNameTaken):
        await database.create_channel("MATHS", "", "discussion", None)
    with pytest.raises(ChannelNameTaken):
        await database.create_channel("General", "", "discussion", None)
    names = [c.name for c in await database.list_channels()]
    assert names == ["general", "Maths"]
    assert await database.delete_channel(maths.id) is True
    assert await database.delete_channel(maths.id) is False
    assert await database.get_channel(maths.id) is None
    # The name is free again once the channel is gone.
    again = await database.create_channel("maths", "", "discussion", None)
    assert again.id != maths.id


@pytest.mark.gen_test
async def test_messages_page_oldest_first(database):
    alice = await _user(database)
    general = (await database.list_channels())[0]
    other = await database.create_channel("other", "", "discussion", alice.id)
    sent = [await database.add_message(general.id, alice, f"m{i}") for i in range(7)]
    await database.add_message(other.id, alice, "elsewhere")
    assert [m.text for m in await database.list_messages(general.id)] == [m.text for m in sent]
    assert await database.list_messages(general.id, limit=3) == sent[-3:]
    assert await database.list_messages(general.id, before=sent[4].id, limit=2) == sent[2:4]
    assert await database.list_messages(general.id, before=sent[0].id) == []
    listed = (await database.list_messages(general.id))[0]
    assert listed == sent[0]
    assert (listed.author_username, listed.author_display_name, listed.author_role) == (
        "alice",
        "Alice",
        "student",
    )
    assert _is_ms_utc(listed.created_at)
    assert await database.list_messages(999_999) == []


@pytest.mark.gen_test
async def test_message_to_missing_channel_is_not_found(database):
    alice = await _user(database)
    with pytest.raises(NotFound):
        await database.add_message(999_999, alice, "hello")


@pytest.mark.gen_test
async def test_deleting_a_channel_deletes_its_messages(database):
    alice = await _user(database)
    doomed = await database.create_channel("doomed", "", "discussion", alice.id)
    await database.add_message(doomed.id, alice, "bye")
    general = (await database.list_channels())[0]
    kept = await database.add_message(general.id, alice, "stay")
    assert await database.delete_channel(doomed.id)
    assert await database.list_messages(doomed.id) == []
    assert await database.list_messages(general.id) == [kept]


@pytest.mark.gen_test
async def test_author_changes_show_in_listed_messages(database):
    alice = await _user(database)
    general = (await database.list_channels())[0]
    await database.add_message(general.id, alice, "hi")
    await database.update_user(alice.id, role="teacher")
    assert (await database.list_messages(general.id))[0].author_role == "teacher"


@pytest.mark.gen_test
async def test_get_message_by_id(database):
    alice = await _user(database)
    general = (await database.list_channels())[0]
    sent = await database.add_message(general.id, alice, "find me")
    assert await database.get_message(sent.id) == sent
    assert await database.get_message(sent.id + 1) is None
    assert await database.get_message(999_999_999_999) is None


@pytest.mark.gen_test
async def test_delete_message_removes_only_that_one(database):
    alice = await _user(database)
    bob = await _user(database, "bob")
    general = (await database.list_channels())[0]
    other = await database.create_channel("other", "", "discussion", alice.id)
    first = await database.add_message(general.id, alice, "one")
    doomed = await database.add_message(general.id, bob, "two")
    last = await database.add_message(general.id, alice, "three")
    elsewhere = await database.add_message(other.id, bob, "four")
    assert await database.delete_message(doomed.id) is True
    assert await database.get_message(doomed.id) is None
    assert await database.list_messages(general.id) == [first, last]
    assert await database.list_messages(other.id) == [elsewhere]
    # A second delete, or one of an id never used, changes nothing and says so.
    assert await database.delete_message(doomed.id) is False
    assert await database.delete_message(999_999_999) is False
    assert await database.list_messages(general.id) == [first, last]
    # Ids are never reused, even the newest one's: a client told "message X deleted" must
    # not see a different message X later.
    assert await database.delete_message(elsewhere.id) is True
    after = await database.add_message(other.id, bob, "five")
    assert after.id > elsewhere.id


@pytest.mark.gen_test
async def test_audit_newest_first(database):
    await database.add_audit("registered", user_id=1, username="a", ip="1.2.3.4", detail={})
    await database.add_audit(
        "role_changed", user_id=1, username="a", ip=None, detail={"by": "root", "role": "admin"}
    )
    await database.add_audit("xsrf_rejected", user_id=None, username=None, ip="::1", detail={})
    events = await database.list_audit()
    assert [e.event for e in events] == ["xsrf_rejected", "role_changed", "registered"]
    assert events[1].detail == {"by": "root", "role": "admin"}
    assert (events[0].user_id, events[0].username, events[0].ip) == (None, None, "::1")
    assert _is_ms_utc(events[0].at)
    assert [e.event for e in await database.list_audit(limit=1)] == ["xsrf_rejected"]


@pytest.mark.gen_test
async def test_audit_stamp_and_tallies(database):
    old = _dt.datetime(2020, 5, 1, 12, 0, tzinfo=_dt.UTC)
    first = await database.add_audit("logout", user_id=1, username="a", ip=None, detail={}, at=old)
    second = await database.add_audit("logout", user_id=1, username="b", ip=None, detail={})
    assert isinstance(first, int) and second == first + 1
    refusal = {"user_id": None, "username": None, "ip": "::1"}
    await database.add_audit_tally(
        "xsrf_rejected", **refusal, detail={"path": "/x"}, key="k1", count=1
    )
    # Another process adds to the same key: one row, the first fields kept, counts summed.
    await database.add_audit_tally(
        "xsrf_rejected", **refusal, detail={"path": "/y"}, key="k1", count=40
    )
    await database.add_audit_tally(
        "xsrf_rejected", **refusal, detail={"path": "/z"}, key="k2", count=2
    )
    events = await database.list_audit()
    assert [e.to_json()["detail"] for e in events] == [
        {"path": "/z", "count": 2},
        {"path": "/x", "count": 41},
        {},
        {},
    ]
    assert events[-1].at == old and events[-1].count is None


@pytest.mark.gen_test
async def test_prune_audit_drops_only_older_rows_in_batches(database):
    now = _dt.datetime.now(_dt.UTC)
    for days in (400, 300, 200, 181):
        await database.add_audit(
            "logout",
            user_id=1,
            username=f"old{days}",
            ip=None,
            detail={},
            at=now - _dt.timedelta(days=days),
        )
    await database.add_audit(
        "logout",
        user_id=1,
        username="recent",
        ip=None,
        detail={},
        at=now - _dt.timedelta(days=179),
    )
    await database.add_audit("logout", user_id=1, username="now", ip=None, detail={})
    cutoff = now - _dt.timedelta(days=180)
    assert await database.prune_audit(cutoff, limit=3) == 3
    assert [e.username for e in await database.list_audit()] == ["now", "recent", "old181"]
    assert await database.prune_audit(cutoff, limit=3) == 1
    assert await database.prune_audit(cutoff, limit=3) == 0
    assert [e.username for e in await database.list_audit()] == ["now", "recent"]


@pytest.mark.gen_test
async def test_sqlite_schema_1_upgrades_keeping_audit_rows(tmp_path):
    import sqlite3

    from plp.storage.sqlite import SQLITE

    path = str(tmp_path / "v1.sqlite3")
    conn = sqlite3.connect(path)
    conn.executescript(SQLITE.migrations[1] + ";PRAGMA user_version=1;")
    conn.execute("INSERT INTO audit (at, event, detail) VALUES (1000, 'logout', '{}')")
    conn.commit()
    conn.close()
    database = SQLiteDatabase(path)
    try:
        await database.migrate()
        assert [e.event for e in await database.list_audit()] == ["logout"]
        plan = database._conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM audit WHERE at < 5 ORDER BY at"
        ).fetchall()
        assert "audit_by_at" in str(plan)
    finally:
        await database.close()


# -- PostgreSQL only -----------------------------------------------------------------------


@pytest.mark.gen_test
async def test_postgres_concurrent_migrations_apply_once(pg_database):
    _, make = pg_database
    first, second, third = make(), make(), make()
    await asyncio.gather(first.migrate(), second.migrate(), third.migrate())
    assert [c.name for c in await second.list_channels()] == ["general"]
    user = await first.create_user("solo", "Solo", "student", "h")
    assert await third.get_user(user.id) == user


@pytest.mark.gen_test
async def test_postgres_refuses_a_newer_schema(pg_database):
    import psycopg

    url, make = pg_database
    await make().migrate()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("INSERT INTO plp_schema_version (version) VALUES (99)")
    with pytest.raises(CannotOpen, match="newer than this plp"):
        await make().migrate()


@pytest.mark.gen_test
async def test_postgres_schema_1_upgrades_keeping_audit_rows(pg_database):
    import psycopg

    from plp.storage.postgres import POSTGRES

    url, make = pg_database
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE plp_schema_version (version INTEGER NOT NULL)")
        await conn.execute(POSTGRES.migrations[1])
        await conn.execute("INSERT INTO plp_schema_version (version) VALUES (1)")
        await conn.execute("INSERT INTO audit (at, event, detail) VALUES (1000, 'logout', '{}')")
    database = make()
    await database.migrate()
    await database.add_audit_tally(
        "ws_rejected", user_id=None, username=None, ip="::1", detail={}, key="k", count=2
    )
    assert [(e.event, e.count) for e in await database.list_audit()] == [
        ("ws_rejected", 2),
        ("logout", None),
    ]


@pytest.mark.gen_test
async def test_open_database_routes_postgres_urls(pg_database):
    from plp.storage.postgres import PostgresDatabase

    url, _ = pg_database
    database = open_database(url)
    try:
        assert isinstance(database, PostgresDatabase)
        await database.migrate()
        assert await database.count_users() == 0
    finally:
        await database.close()


@pytest.mark.gen_test
async def test_postgres_unreachable_is_storage_unavailable():
    from plp.storage.postgres import PostgresDatabase

    database = PostgresDatabase(
        "postgresql://postgres@127.0.0.1:1/none", timeout=0.5, open_timeout=0.5
    )
    try:
        with pytest.raises(StorageUnavailable):
            await database.migrate()
        with pytest.raises(StorageUnavailable):
            await database.get_user(1)
    finally:
        await database.close()


@pytest.mark.gen_test
async def test_update_user_changes_display_name_only(database):
    # /account/name (issue 12): the display name changes; role and disabled stay as they were.
    user = await _user(database, "dora", "teacher")
    updated = await database.update_user(user.id, display_name="Dora the Teacher")
    assert (updated.display_name, updated.role, updated.disabled) == (
        "Dora the Teacher",
        "teacher",
        False,
    )
    assert (await database.get_user(user.id)).display_name == "Dora the Teacher"
    kept = await database.update_user(user.id, role="admin")
    assert (kept.display_name, kept.role) == ("Dora the Teacher", "admin")
