"""The in-process session store (SPEC §3), at unit level: expiry, cap, listeners, snapshot."""

from __future__ import annotations

import json
import random

import pytest

from plp.context import make_context
from plp.server import make_pruner
from plp.sessions.base import (
    END_CAPPED,
    END_EXPIRED,
    END_LOGOUT,
    END_REVOKED,
    TOUCH_GRANULARITY,
    hash_token,
)
from plp.sessions.memory import MemorySessionStore
from tests.support import wait_until

IDLE = 100.0
MAX_AGE = 1000.0


class Ends:
    """An end listener that remembers (key, user_id, reason) for every ended session."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str]] = []

    def __call__(self, key: str, user_id: int, reason: str) -> None:
        self.seen.append((key, user_id, reason))

    def reasons(self) -> list[str]:
        return [reason for _key, _user, reason in self.seen]


@pytest.fixture
def ends() -> Ends:
    return Ends()


@pytest.fixture
def make_store(clock, ends):
    def make(idle: float = IDLE, max_age: float = MAX_AGE, per_user: int = 10):
        store = MemorySessionStore(
            idle_timeout=idle, max_age=max_age, per_user=per_user, clock=clock
        )
        store.add_end_listener(ends)
        return store

    return make


@pytest.fixture
def store(make_store):
    return make_store()


async def new(store: MemorySessionStore, user_id: int = 1):
    return await store.create(user_id, ip="127.0.0.1", user_agent="pytest")


class CountingDict(dict):
    """The store's session table, counting lookups: how many sessions the pruner inspects."""

    lookups = 0

    def __getitem__(self, key):
        self.lookups += 1
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.lookups += 1
        return super().get(key, default)


def instrument(store: MemorySessionStore) -> CountingDict:
    counting = CountingDict(store._sessions)
    store._sessions = counting
    return counting


# --- lookup and expiry -----------------------------------------------------------------------


@pytest.mark.gen_test
async def test_create_and_get(store):
    token, session = await new(store, 7)
    assert session.key == hash_token(token) and token not in session.key
    assert len(token) >= 22  # >= 128 bits, URL-safe
    assert (await store.get(token)) is session
    assert (await store.get_by_key(session.key)) is session
    assert (await store.get(token + "x")) is None
    assert (await store.get("")) is None
    other, _ = await new(store, 7)
    assert other != token and await store.count() == 2


@pytest.mark.gen_test
async def test_idle_expiry_refused_before_pruner(store, clock, ends):
    token, session = await new(store)
    clock.advance(IDLE - 0.5)
    assert await store.get(token) is session
    clock.advance(0.5)  # exactly at the idle deadline
    assert await store.get(token) is None
    assert ends.seen == [(session.key, 1, END_EXPIRED)]
    assert await store.count() == 0
    assert await store.prune_expired() == 0  # already gone; no second notice
    assert len(ends.seen) == 1


@pytest.mark.gen_test
async def test_absolute_expiry_despite_activity(store, clock, ends):
    token, session = await new(store)
    for _ in range(int(MAX_AGE // (IDLE / 2))):
        clock.advance(IDLE / 2)
        found = await store.get(token)
        if found is None:
            break
        await store.touch(found)
        assert session.created_at + MAX_AGE > clock()
    assert clock() >= session.created_at + MAX_AGE
    assert await store.get(token) is None
    assert ends.reasons() == [END_EXPIRED]


@pytest.mark.gen_test
async def test_touch_pushes_back_idle_but_not_absolute(store, clock):
    token, session = await new(store)
    created = session.created_at
    clock.advance(TOUCH_GRANULARITY / 2)
    await store.touch(session)
    assert session.last_seen == created  # within the granularity: no write
    clock.advance(IDLE - 1)
    await store.touch(session)
    assert session.last_seen == clock()
    assert session.created_at == created
    assert session.deadline(IDLE, MAX_AGE) == clock() + IDLE
    clock.advance(IDLE - 1)
    assert await store.get(token) is session  # would have expired without the touch
    clock.advance(MAX_AGE)
    await store.touch(session)  # touching an expired session revives nothing
    assert await store.get(token) is None


@pytest.mark.gen_test
async def test_touch_of_ended_session_is_ignored(store, clock):
    token, session = await new(store)
    await store.end(session.key, END_LOGOUT)
    clock.advance(5)
    await store.touch(session)
    assert await store.get(token) is None
    assert list(store._idle) == []


# --- pruner ----------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_pruner_removes_only_expired(store, clock, ends):
    idle_token, idle_one = await new(store, 1)
    old_token, old_busy = await new(store, 2)
    clock.advance(MAX_AGE - IDLE / 2)
    live_token, live = await new(store, 3)
    await store.touch(old_busy)  # active, but near its absolute end
    clock.advance(IDLE / 2)  # idle_one: idle-expired; old_busy: at max age; live: fine
    assert await store.count() == 3
    assert await store.prune_expired() == 2
    assert sorted(ends.seen) == sorted(
        [(idle_one.key, 1, END_EXPIRED), (old_busy.key, 2, END_EXPIRED)]
    )
    assert await store.get(live_token) is live
    assert await store.get(idle_token) is None and await store.get(old_token) is None
    assert await store.prune_expired() == 0
    assert await store.list_for_user(3) == [live]


@pytest.mark.gen_test
async def test_pruner_skips_sessions_ended_earlier(store, clock, ends):
    _, first = await new(store, 1)
    _, second = await new(store, 1)
    await store.end(first.key, END_LOGOUT)
    clock.advance(IDLE)
    assert await store.prune_expired() == 1
    assert ends.seen == [(first.key, 1, END_LOGOUT), (second.key, 1, END_EXPIRED)]
    assert len(store._created) == 0 and len(store._idle) == 0


@pytest.mark.gen_test
async def test_sessions_ended_behind_a_live_one_leave_the_queues_at_once(make_store, clock):
    """Issue 10: a long-lived first session must not pin ended ones until it expires."""
    store = make_store(per_user=3)
    _, first = await new(store, 1)
    for n in range(1000):
        _, later = await new(store, 2)  # the cap ends user 2's oldest each time
        if n % 7 == 0:
            await store.end(later.key, END_LOGOUT)
    live = await store.count()
    assert live <= 4
    assert len(store._created) == len(store._idle) == len(store._sessions) == live
    assert next(iter(store._created)) == first.key
    table = instrument(store)
    assert await store.prune_expired() == 0
    assert table.lookups <= 1  # the live head only: nothing ended is left to walk over


@pytest.mark.gen_test
async def test_pruner_follows_touch_order(store, clock):
    sessions = [(await new(store, n))[1] for n in range(6)]
    clock.advance(IDLE / 2)
    for session in sessions[:3]:
        await store.touch(session)  # first three stay fresh; last three go idle
    clock.advance(IDLE / 2)
    assert await store.prune_expired() == 3
    remaining = {s.key for n in range(6) for s in await store.list_for_user(n)}
    assert remaining == {s.key for s in sessions[:3]}


async def expired_among_live(make_store, clock, live: int, expired: int, *, idle: bool):
    """A store with `expired` expired sessions among `live` live ones, instrumented."""
    store = make_store()
    stale = [(await new(store, n))[1] for n in range(expired)]
    clock.advance(IDLE / 2 if idle else MAX_AGE - IDLE / 2)
    if not idle:
        for session in stale:
            await store.touch(session)  # busy, but past max age soon
    for n in range(live):
        await new(store, expired + n)
    clock.advance(IDLE / 2 + 0.001)
    return store, instrument(store)


@pytest.mark.parametrize("idle", [True, False], ids=["idle", "absolute"])
@pytest.mark.gen_test
async def test_pruner_work_is_proportional_to_expired(make_store, clock, idle):
    counts = {}
    for live in (100, 5000):
        clock.now = 1_000_000.0
        store, table = await expired_among_live(make_store, clock, live, 20, idle=idle)
        assert await store.prune_expired() == 20
        assert await store.count() == live
        counts[live] = table.lookups
    # Each expired session is looked at a bounded number of times, plus one per queue
    # to find the first live one: the same whether 100 or 5000 sessions are live.
    assert counts[100] == counts[5000]
    assert counts[5000] <= 2 * 20 + 2


@pytest.mark.gen_test
async def test_pruner_with_nothing_expired_inspects_almost_nothing(store):
    for n in range(2000):
        await new(store, n)
    table = instrument(store)
    assert await store.prune_expired() == 0
    assert table.lookups <= 2


# --- per-user cap ----------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_cap_ends_the_oldest(make_store, clock, ends):
    store = make_store(per_user=3)
    made = []
    for _ in range(3):
        made.append(await new(store, 1))
        clock.advance(1)
    await new(store, 2)  # another user's session is not counted
    token4, fourth = await new(store, 1)
    assert ends.seen == [(made[0][1].key, 1, END_CAPPED)]
    assert await store.get(made[0][0]) is None
    assert [s.key for s in await store.list_for_user(1)] == [
        made[1][1].key,
        made[2][1].key,
        fourth.key,
    ]
    assert len(await store.list_for_user(2)) == 1
    assert await store.get(token4) is fourth


@pytest.mark.gen_test
async def test_cap_counts_only_live_sessions(make_store, clock, ends):
    store = make_store(per_user=2)
    _, old = await new(store, 1)
    clock.advance(IDLE / 2)
    token_b, b = await new(store, 1)
    clock.advance(IDLE / 2)  # `old` has expired, unpruned; `b` is live
    await store.touch(b)
    token_c, c = await new(store, 1)
    assert ends.seen == [(old.key, 1, END_EXPIRED)]  # expired, not "pushed out"
    assert await store.get(token_b) is b and await store.get(token_c) is c


# --- ending ----------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_end_and_listeners(store, ends):
    token, session = await new(store, 4)
    assert await store.end(session.key, END_LOGOUT) is True
    assert await store.end(session.key, END_LOGOUT) is False
    assert await store.end("0" * 64, END_LOGOUT) is False
    assert ends.seen == [(session.key, 4, END_LOGOUT)]
    assert await store.get(token) is None


@pytest.mark.gen_test
async def test_failing_listener_does_not_stop_others(store, ends, caplog):
    def broken(key: str, user_id: int, reason: str) -> None:
        raise RuntimeError("listener bug")

    later = Ends()
    store.add_end_listener(broken)
    store.add_end_listener(later)
    _, session = await new(store)
    await store.end(session.key, END_REVOKED)
    assert ends.reasons() == [END_REVOKED] and later.reasons() == [END_REVOKED]
    assert "session end listener failed" in caplog.text


@pytest.mark.gen_test
async def test_end_by_handle_only_for_owner(store, ends):
    token, mine = await new(store, 1)
    other_token, theirs = await new(store, 2)
    assert await store.end_by_handle(2, mine.handle, END_REVOKED) is False
    assert await store.end_by_handle(1, theirs.handle, END_REVOKED) is False
    assert await store.end_by_handle(1, "no-such-handle", END_REVOKED) is False
    assert await store.end_by_handle(1, mine.key, END_REVOKED) is False  # key is not a handle
    assert ends.seen == []
    assert await store.end_by_handle(1, mine.handle, END_REVOKED) is True
    assert ends.seen == [(mine.key, 1, END_REVOKED)]
    assert await store.get(token) is None
    assert await store.get(other_token) is theirs
    assert mine.handle != mine.key and token not in mine.handle


@pytest.mark.gen_test
async def test_end_all_for_user(store, ends):
    keep_token, keep = await new(store, 1)
    for _ in range(3):
        await new(store, 1)
    _, other = await new(store, 2)
    assert await store.end_all_for_user(1, END_LOGOUT, except_key=keep.key) == 3
    assert await store.get(keep_token) is keep
    assert ends.reasons() == [END_LOGOUT] * 3
    assert await store.end_all_for_user(1, END_LOGOUT) == 1
    assert await store.end_all_for_user(1, END_LOGOUT) == 0
    assert await store.list_for_user(1) == []
    assert await store.list_for_user(2) == [other]


@pytest.mark.gen_test
async def test_list_for_user_drops_expired(store, clock, ends):
    _, first = await new(store, 1)
    clock.advance(IDLE - 1)
    _, second = await new(store, 1)
    clock.advance(1)
    assert await store.list_for_user(1) == [second]
    assert ends.seen == [(first.key, 1, END_EXPIRED)]


# --- snapshot / restore ----------------------------------------------------------------------


@pytest.mark.gen_test
async def test_snapshot_restore_round_trip(make_store, clock, ends):
    store = make_store()
    tokens = {}
    for n in range(5):
        token, session = await new(store, n % 2 + 1)
        tokens[token] = session
        clock.advance(3)
    gone_token, gone = await new(store, 9)
    await store.end(gone.key, END_LOGOUT)
    records = json.loads(json.dumps(store.snapshot()))  # what goes to disk
    text = json.dumps(records)
    assert len(records) == 5
    for token in [*tokens, gone_token]:
        assert token not in text  # hashed keys only
    assert gone.key not in text

    restored = make_store()
    assert restored.restore(records) == 5
    for token, original in tokens.items():
        session = await restored.get(token)
        assert session is not None
        assert (session.key, session.handle, session.user_id) == (
            original.key,
            original.handle,
            original.user_id,
        )
        assert (session.created_at, session.last_seen) == (original.created_at, original.last_seen)
        assert (session.ip, session.user_agent) == (original.ip, original.user_agent)
    assert await restored.get(gone_token) is None
    assert await restored.end_by_handle(1, records[0]["handle"], END_REVOKED) is True


@pytest.mark.gen_test
async def test_snapshot_keeps_the_sign_in_method_and_time(make_store, clock):
    store = make_store()
    token, session = await store.create(1, ip="10.0.0.1", user_agent="t", method="passkey")
    clock.advance(5)
    await store.renew_auth(session)
    records = json.loads(json.dumps(store.snapshot()))
    restored = make_store()
    assert restored.restore(records) == 1
    got = await restored.get(token)
    assert (got.method, got.auth_at) == ("passkey", session.auth_at)
    # A snapshot written before sign-in methods existed: a password session, never recent.
    old = [{k: v for k, v in r.items() if k not in ("method", "auth_at")} for r in records]
    older = make_store()
    assert older.restore(old) == 1
    got = await older.get(token)
    assert (got.method, got.auth_at) == ("password", 0.0)
    # A method this plp does not know is a malformed record, skipped.
    bad = [{**records[0], "method": "telepathy"}]
    assert make_store().restore(bad) == 0


@pytest.mark.gen_test
async def test_restore_skips_expired_malformed_and_invalid(make_store, clock):
    store = make_store()
    good_token, good = await new(store, 1)
    idle_token, idle = await new(store, 2)
    blocked_token, blocked = await new(store, 3)
    clock.advance(IDLE / 2)
    await store.touch(good)
    await store.touch(blocked)
    clock.advance(IDLE / 2)  # `idle` is now idle-expired
    records = store.snapshot()
    assert len(records) == 3  # the expired one is still in the table, unpruned
    base = dict(records[0])
    bad = [
        "not a record",
        None,
        42,
        ["key", "handle"],
        {},
        {k: v for k, v in base.items() if k != "handle"},
        {**base, "key": "short"},
        {**base, "key": "a" * 64, "handle": ""},
        {**base, "key": "b" * 64, "user_id": "seven"},
        {**base, "key": "c" * 64, "user_id": None},
        {**base, "key": "d" * 64, "created_at": "yesterday"},
        {**base, "key": "e" * 64, "created_at": float("nan")},
        {**base, "key": "f" * 64, "last_seen": float("inf")},
        {**base, "key": "0" * 64, "handle": "h0", "created_at": clock() + 10_000},
        {**base, "key": "1" * 64, "handle": "h1", "last_seen": base["created_at"] - 1},
        {**base, "key": "2" * 64, "handle": "h2", "created_at": clock() - MAX_AGE},
        dict(base),  # duplicate key
        {**base, "key": "3" * 64},  # duplicate handle for the same user
    ]
    restored = make_store()
    loaded = restored.restore(
        [*records, *bad], valid=lambda session: session.user_id != blocked.user_id
    )
    assert loaded == 1
    assert await restored.get(good_token) is not None
    assert await restored.get(idle_token) is None
    assert await restored.get(blocked_token) is None
    assert await restored.count() == 1
    assert restored.snapshot() == [r for r in records if r["key"] == good.key]
    assert len(restored._created) == 1 and len(restored._idle) == 1
    assert idle.key not in {r["key"] for r in restored.snapshot()}


@pytest.mark.gen_test
async def test_restored_queues_are_ordered_for_the_pruner(make_store, clock, ends):
    store = make_store()
    start = clock()
    made = []
    for n in range(20):
        made.append((await new(store, n))[1])
        clock.advance(1)
    for session in made[::2]:
        clock.advance(1.5)
        await store.touch(session)
    records = store.snapshot()
    random.Random(7).shuffle(records)
    restored = make_store()
    _, fresh = await new(restored, 99)  # the store is not empty when restoring
    assert restored.restore(records) == 20
    clock.now = start + 19 + IDLE + 0.5  # every untouched one is idle-expired
    table = instrument(restored)
    assert await restored.prune_expired() == 10
    assert table.lookups <= 2 * 10 + 2
    alive = {s.key for n in range(20) for s in await restored.list_for_user(n)}
    assert alive == {s.key for s in made[::2]}
    assert fresh.key not in {k for k, _u, _r in ends.seen}


# --- the PeriodicCallback pruner -------------------------------------------------------------


@pytest.mark.gen_test(timeout=10)
async def test_periodic_pruner(settings, db, clock):
    ctx = make_context(
        settings.replace(session_idle_timeout=IDLE, session_prune_interval=0.02),
        db=db,
        clock=clock,
    )
    reports: list[int] = []
    ctx.hooks.on_prune.append(lambda removed, elapsed: reports.append(removed))
    store = ctx.store
    stale = [await new(store, n) for n in range(3)]
    clock.advance(IDLE / 2)
    live_token, live = await new(store, 10)
    pruner = make_pruner(ctx)
    assert pruner.callback_time == pytest.approx(20)
    pruner.start()
    try:
        await wait_until(lambda: reports, what="the pruner's first run")
        assert reports and reports[0] == 0  # nothing expired yet: runs, removes nothing
        assert await store.count() == 4
        clock.advance(IDLE / 2)  # the three stale ones are now idle-expired
        await wait_until(lambda: 3 in reports, what="a run that removes the three")
        assert 3 in reports
        assert await store.count() == 1  # gone from the table, not merely refused
        assert await store.get(live_token) is live
        assert [await store.get(token) for token, _ in stale] == [None, None, None]
    finally:
        pruner.stop()
        ctx.hasher.close()
