"""SQLite only (plp/storage/sqlite.py): its user cache never hides a change made through
another connection."""

from __future__ import annotations

import sqlite3

import pytest

from plp.storage.sqlite import SQLiteDatabase
from tests.support import body


def test_user_cache_sees_changes_from_other_connections(tmp_path, io_loop):
    db = SQLiteDatabase(str(tmp_path / "c.sqlite3"))
    io_loop.run_sync(db.migrate)
    user = io_loop.run_sync(lambda: db.create_user("carol", "Carol", "student", "x"))
    assert io_loop.run_sync(lambda: db.get_user(user.id)).role == "student"
    other = sqlite3.connect(str(tmp_path / "c.sqlite3"), isolation_level=None)
    other.execute("UPDATE users SET role = 'teacher', disabled = 1 WHERE id = ?", (user.id,))
    other.close()
    again = io_loop.run_sync(lambda: db.get_user(user.id))
    assert again.role == "teacher" and again.disabled
    io_loop.run_sync(lambda: db.update_user(user.id, disabled=False))
    assert not io_loop.run_sync(lambda: db.get_user(user.id)).disabled
    io_loop.run_sync(db.close)


@pytest.mark.gen_test
async def test_disabling_in_another_connection_ends_the_next_request(client, make_user, settings):
    user = await make_user("dave")
    assert (await client.login("dave")).code == 200
    assert (await client.fetch("/api/users/me")).code == 200  # the user is now cached
    other = sqlite3.connect(settings.db_url, isolation_level=None)
    other.execute("UPDATE users SET disabled = 1 WHERE id = ?", (user.id,))
    other.close()
    response = await client.fetch("/api/users/me")
    assert response.code == 401
    assert body(response)["error"] == "not_authenticated"
