"""Classes in storage (plp/storage/classes_sql.py), on SQLite and real PostgreSQL alike."""

from __future__ import annotations

import pytest

from plp.storage.base import ChannelNameTaken, NotFound, User
from plp.storage.classes import ClassNameTaken, JoinCodeTaken
from plp.storage.sqlite import SQLiteDatabase
from tests.support import backends


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path, io_loop):
    if request.param == "sqlite":
        database = SQLiteDatabase(str(tmp_path / "classes.sqlite3"))
        io_loop.run_sync(database.migrate)
        yield database
        io_loop.run_sync(database.close)
        return
    from plp.storage.postgres import PostgresDatabase

    base = backends.postgres_url()
    url, name = backends.fresh_postgres_database(base)
    database = PostgresDatabase(url, min_size=1, max_size=4)
    io_loop.run_sync(database.migrate)
    yield database
    io_loop.run_sync(database.close)
    backends.drop_postgres_database(base, name)


async def _user(database, name: str, role: str = "student") -> User:
    return await database.create_user(name, name.title(), role, "hash-of-" + name)


@pytest.mark.gen_test
async def test_create_makes_the_creator_teacher(database):
    tess = await _user(database, "tess", "teacher")
    made = await database.create_class("5A", tess.id, "ABCDEFGH")
    assert (made.name, made.join_code, made.created_by, made.member_count) == (
        "5A",
        "ABCDEFGH",
        tess.id,
        1,
    )
    assert await database.get_class(made.id) == made
    assert await database.class_role(made.id, tess.id) == "teacher"
    assert await database.classes_of(tess.id) == [(made, "teacher")]
    assert await database.get_class(999) is None


@pytest.mark.gen_test
async def test_names_and_codes_are_unique(database):
    tess = await _user(database, "tess", "teacher")
    made = await database.create_class("Maths 5A", tess.id, "ABCDEFGH")
    with pytest.raises(ClassNameTaken):
        await database.create_class("maths 5a", tess.id, "ZZZZZZZZ")
    with pytest.raises(JoinCodeTaken):
        await database.create_class("Art", tess.id, "ABCDEFGH")
    other = await database.create_class("Art", tess.id, "ZZZZZZZZ")
    with pytest.raises(ClassNameTaken):
        await database.rename_class(other.id, "MATHS 5A")
    with pytest.raises(JoinCodeTaken):
        await database.set_join_code(other.id, "ABCDEFGH")
    with pytest.raises(NotFound):
        await database.rename_class(999, "x")
    assert (await database.rename_class(other.id, "Art 2")).name == "Art 2"
    # The refused writes left nothing behind.
    assert [c.name for c in await database.list_classes()] == ["Art 2", "Maths 5A"]
    assert (await database.get_class(made.id)).member_count == 1


@pytest.mark.gen_test
async def test_codes_look_up_set_and_close(database):
    tess = await _user(database, "tess", "teacher")
    made = await database.create_class("5A", tess.id, "ABCDEFGH")
    assert (await database.class_by_code("ABCDEFGH")).id == made.id
    assert await database.set_join_code(made.id, "HJKMNPQR")
    assert await database.class_by_code("ABCDEFGH") is None
    assert await database.set_join_code(made.id, None)
    assert await database.class_by_code("HJKMNPQR") is None
    assert (await database.get_class(made.id)).join_code is None
    assert not await database.set_join_code(999, "ABCDEFGH")
    # Two closed classes: NULL codes never collide.
    other = await database.create_class("5B", tess.id, "STVWXYZ2")
    assert await database.set_join_code(other.id, None)


@pytest.mark.gen_test
async def test_members_join_add_remove(database):
    tess = await _user(database, "tess", "teacher")
    tom = await _user(database, "tom", "teacher")
    kid = await _user(database, "kid")
    made = await database.create_class("5A", tess.id, "ABCDEFGH")
    assert await database.join_class(made.id, kid.id)
    assert not await database.join_class(made.id, kid.id)  # already in: unchanged
    assert not await database.join_class(made.id, tess.id)
    assert await database.class_role(made.id, tess.id) == "teacher"
    assert await database.add_member(made.id, tom.id, "teacher") is None
    assert await database.add_member(made.id, tom.id, "student") == "teacher"
    assert await database.add_member(made.id, tom.id, "teacher") == "student"
    members = await database.list_members(made.id)
    assert [(m.user.username, m.class_role) for m in members] == [
        ("tess", "teacher"),
        ("tom", "teacher"),
        ("kid", "student"),
    ]
    assert (await database.get_class(made.id)).member_count == 3
    with pytest.raises(NotFound):
        await database.add_member(999, kid.id, "student")
    with pytest.raises(NotFound):
        await database.join_class(999, kid.id)
    assert await database.remove_member(made.id, kid.id)
    assert not await database.remove_member(made.id, kid.id)
    assert await database.class_role(made.id, kid.id) is None


@pytest.mark.gen_test
async def test_channels_are_scoped_and_visible_to_members(database):
    tess = await _user(database, "tess", "teacher")
    kid = await _user(database, "kid")
    a = await database.create_class("5A", tess.id, "ABCDEFGH")
    b = await database.create_class("5B", tess.id, "HJKMNPQR")
    school = await database.create_channel("maths", "", "discussion", None)
    in_a = await database.create_channel("maths", "", "discussion", tess.id, a.id)
    in_b = await database.create_channel("Maths", "", "discussion", tess.id, b.id)
    assert (school.class_id, in_a.class_id, in_b.class_id) == (None, a.id, b.id)
    assert await database.get_channel(in_a.id) == in_a
    with pytest.raises(ChannelNameTaken):
        await database.create_channel("MATHS", "", "discussion", tess.id, a.id)
    with pytest.raises(ChannelNameTaken):
        await database.create_channel("Maths", "", "discussion", None)
    with pytest.raises(NotFound):
        await database.create_channel("x", "", "discussion", tess.id, 999)
    assert [c.name for c in await database.channels_for(kid.id)] == ["general", "maths"]
    await database.join_class(a.id, kid.id)
    assert [c.id for c in await database.channels_for(kid.id)] == [1, school.id, in_a.id]
    assert await database.class_channel_ids(a.id) == [in_a.id]


@pytest.mark.gen_test
async def test_deleting_a_class_takes_channels_messages_and_members(database):
    tess = await _user(database, "tess", "teacher")
    kid = await _user(database, "kid")
    made = await database.create_class("5A", tess.id, "ABCDEFGH")
    await database.join_class(made.id, kid.id)
    one = await database.create_channel("one", "", "discussion", tess.id, made.id)
    two = await database.create_channel("two", "", "discussion", tess.id, made.id)
    message = await database.add_message(one.id, kid, "hi")
    kept = await database.add_message(1, kid, "in general")
    assert await database.delete_class(made.id) == [one.id, two.id]
    assert await database.delete_class(made.id) is None
    assert await database.get_channel(one.id) is None
    assert await database.get_message(message.id) is None
    assert await database.get_message(kept.id) == kept
    assert await database.class_role(made.id, kid.id) is None
    assert await database.classes_of(kid.id) == []


@pytest.mark.gen_test
async def test_teaches_student(database):
    tess = await _user(database, "tess", "teacher")
    tom = await _user(database, "tom", "teacher")
    kid = await _user(database, "kid")
    pal = await _user(database, "pal")
    a = await database.create_class("5A", tess.id, "ABCDEFGH")
    b = await database.create_class("5B", tom.id, "HJKMNPQR")
    await database.join_class(a.id, kid.id)
    await database.join_class(b.id, pal.id)
    await database.add_member(b.id, tess.id, "student")  # tess is a student in 5B
    assert await database.teaches_student(tess.id, kid.id)
    assert not await database.teaches_student(tess.id, pal.id)  # a classmate, not a pupil
    assert not await database.teaches_student(tom.id, kid.id)
    assert not await database.teaches_student(kid.id, tess.id)
    assert await database.teaches_student(tom.id, tess.id)
