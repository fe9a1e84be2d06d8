"""The session snapshot file: format, secret binding, damage, expiry at restore (clocked)."""

from __future__ import annotations

import asyncio
import logging
import os
import stat

import pytest

from plp.sessions.base import hash_token
from plp.sessions.memory import MemorySessionStore
from plp.snapshot import (
    SNAPSHOT_NAME,
    SnapshotRejected,
    decode_snapshot,
    encode_snapshot,
    restore_sessions,
    save_sessions,
    secret_fingerprint,
)

SECRET = "snapshot-secret-" + "q" * 40
OTHER = "other-secret-" + "r" * 40


def make_store(clock) -> MemorySessionStore:
    return MemorySessionStore(idle_timeout=100, max_age=1000, per_user=10, clock=clock)


def run(coro):
    # A fresh loop in a worker thread: independent of whatever loop pytest plugins hold.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def test_round_trip_keeps_sessions_and_never_the_token(tmp_path, clock):
    store = make_store(clock)
    token, session = run(store.create(5, ip="10.0.0.1", user_agent="ua"))
    path = tmp_path / SNAPSHOT_NAME
    assert save_sessions(store, path, SECRET) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = path.read_bytes()
    assert token.encode() not in data and SECRET.encode() not in data
    assert hash_token(token).encode() in data
    assert not [p for p in tmp_path.iterdir() if p.name != SNAPSHOT_NAME]  # no temp files left

    fresh = make_store(clock)
    assert restore_sessions(fresh, path, (SECRET,)) == 1
    assert not path.exists()
    restored = run(fresh.get(token))
    assert restored is not None and restored.user_id == 5 and restored.handle == session.handle


def test_expired_sessions_dropped_at_restore(tmp_path, clock):
    store = make_store(clock)
    idle_token, _ = run(store.create(1, ip="", user_agent=""))
    clock.advance(60)
    busy_token, _ = run(store.create(2, ip="", user_agent=""))
    path = tmp_path / SNAPSHOT_NAME
    save_sessions(store, path, SECRET)
    clock.advance(50)  # the first is now 110 s idle (> 100), the second 50 s
    fresh = make_store(clock)
    assert restore_sessions(fresh, path, (SECRET,)) == 1
    assert run(fresh.get(idle_token)) is None
    assert run(fresh.get(busy_token)) is not None


def test_previous_secret_accepted_and_foreign_rejected(clock):
    store = make_store(clock)
    run(store.create(1, ip="", user_agent=""))
    data = encode_snapshot(store.snapshot(), OTHER, now=clock())
    assert len(decode_snapshot(data, (SECRET, OTHER))) == 1
    with pytest.raises(SnapshotRejected, match="different SESSION_SECRET"):
        decode_snapshot(data, (SECRET,))
    assert secret_fingerprint(SECRET) != secret_fingerprint(OTHER)
    assert SECRET not in secret_fingerprint(SECRET)


def test_damaged_file_logged_once_and_removed(tmp_path, clock, caplog):
    store = make_store(clock)
    run(store.create(1, ip="", user_agent=""))
    path = tmp_path / SNAPSHOT_NAME
    save_sessions(store, path, SECRET)
    path.write_bytes(path.read_bytes()[:-10])
    fresh = make_store(clock)
    with caplog.at_level(logging.INFO, logger="plp.snapshot"):
        assert restore_sessions(fresh, path, (SECRET,)) == 0
    ignored = [r for r in caplog.records if "ignored" in r.getMessage()]
    assert len(ignored) == 1 and ignored[0].levelno == logging.WARNING
    assert not path.exists()


def test_missing_file_is_fine(tmp_path, clock):
    assert restore_sessions(make_store(clock), tmp_path / SNAPSHOT_NAME, (SECRET,)) == 0


def test_write_replaces_a_symlink_rather_than_following_it(tmp_path, clock):
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    path = tmp_path / SNAPSHOT_NAME
    os.symlink(target, path)
    save_sessions(make_store(clock), path, SECRET)
    assert target.read_text() == "keep me"
    assert not path.is_symlink()
