"""The request-path caches added for speed keep every security rule (docs/performance.md)."""

from __future__ import annotations

import sqlite3

import pytest

from plp.sessions.base import hash_token
from plp.sessions.cookie import VERIFIED_CACHE_SIZE, CookieSigner
from plp.storage.sqlite import SQLiteDatabase
from tests.conftest import body


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_cached_cookie_still_expires_with_its_signature():
    clock = Clock()
    signer = CookieSigner("plp_session", "s" * 40, (), 3600.0, clock=clock)
    value = signer.sign("token-1")  # signed at real time; the clock below moves past it
    clock.now = float(value.split("|")[2].split(":")[1])
    assert signer.session_key(value) == (hash_token("token-1"), None)
    assert signer.session_key(value) == (hash_token("token-1"), None)  # from the cache
    clock.now += 3601
    assert signer.session_key(value) == (None, None)
    assert signer.session_key(value) == (None, None)  # and not cached as valid again


def test_cookie_cache_refuses_tampered_values_and_is_bounded():
    signer = CookieSigner("plp_session", "s" * 40, (), 3600.0)
    value = signer.sign("token-2")
    assert signer.session_key(value)[0] == hash_token("token-2")
    # The cache never holds a raw token, only the store key.
    assert all("token-2" not in str(entry) for entry in signer._verified.values())
    tampered = value[:-1] + ("0" if value[-1] != "0" else "1")
    assert signer.session_key(tampered) == (None, None)
    assert tampered not in signer._verified
    for i in range(VERIFIED_CACHE_SIZE + 10):
        signer.session_key(signer.sign(f"t{i}"))
    assert len(signer._verified) == VERIFIED_CACHE_SIZE
    signer.forget(signer.sign("gone"))  # forgetting an unknown value is harmless


def test_old_key_reissue_survives_the_cache():
    old = CookieSigner("plp_session", "o" * 40, (), 3600.0)
    value = old.sign("token-3")
    signer = CookieSigner("plp_session", "n" * 40, ("o" * 40,), 3600.0)
    # Old-key values are never cached: each use asks for a re-issue under the new key.
    assert signer.session_key(value) == (hash_token("token-3"), "token-3")
    assert signer.session_key(value) == (hash_token("token-3"), "token-3")
    assert value not in signer._verified


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
