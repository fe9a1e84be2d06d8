"""One suite for every session store (memory, real Redis) and every throttle backend.

Expiry is driven by the injectable clock; the Redis store computes deadlines from it too and
also sets real TTLs, which are checked separately.
"""

from __future__ import annotations

import pytest
import redis as redis_sync

from plp.sessions.base import (
    END_CAPPED,
    END_EXPIRED,
    END_LOGOUT,
    END_REVOKED,
    SessionStoreUnavailable,
    hash_token,
)
from plp.sessions.memory import MemorySessionStore
from plp.throttle import MAX_BLOCK, MemoryThrottle
from tests.support import backends, wait_until

IDLE = 100.0
MAX_AGE = 1000.0
PER_USER = 3
BACKENDS = ["memory", "redis"]


class Heard:
    """An end listener that records (key, user_id, reason)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str]] = []

    def __call__(self, key: str, user_id: int, reason: str) -> None:
        self.calls.append((key, user_id, reason))


@pytest.fixture
def redis_env(request):
    """(url, prefix) for one test; its keys are deleted afterwards."""
    url = backends.redis_url()
    prefix = backends.unique_prefix()
    yield url, prefix
    backends.delete_prefix(url, prefix)


def _make_store(kind: str, clock, redis_env_value=None, **overrides):
    kwargs = dict(idle_timeout=IDLE, max_age=MAX_AGE, per_user=PER_USER, clock=clock)
    kwargs.update(overrides)
    if kind == "memory":
        return MemorySessionStore(**kwargs)
    from plp.redis.sessions import RedisSessionStore

    url, prefix = redis_env_value
    return RedisSessionStore(url, prefix=prefix, **kwargs)


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_env")
    return "memory", None


@pytest.fixture
def make_store(backend, clock, io_loop):
    kind, env = backend
    made = []

    def make(**overrides):
        store = _make_store(kind, clock, env, **overrides)
        made.append(store)
        return store

    yield make
    for store in made:
        io_loop.run_sync(store.close)


@pytest.fixture
def store(make_store):
    return make_store()


async def _new(store, user_id: int = 1, ip: str = "10.0.0.1"):
    return await store.create(user_id, ip=ip, user_agent="pytest")


@pytest.mark.gen_test
async def test_create_then_get(store):
    token, session = await _new(store, 7)
    assert session.key == hash_token(token)
    assert token not in session.key
    got = await store.get(token)
    assert got is not None
    assert (got.key, got.handle, got.user_id, got.ip, got.user_agent) == (
        session.key,
        session.handle,
        7,
        "10.0.0.1",
        "pytest",
    )
    assert got.created_at == pytest.approx(session.created_at)
    assert (await store.get_by_key(session.key)).handle == session.handle
    assert await store.count() == 1


@pytest.mark.gen_test
async def test_unknown_tokens_are_none(store):
    await _new(store)
    assert await store.get("not-a-token") is None
    assert await store.get("") is None
    assert await store.get_by_key("0" * 64) is None


@pytest.mark.gen_test
async def test_each_session_gets_a_distinct_token_and_handle(store):
    made = [await _new(store, 1) for _ in range(3)]
    assert len({t for t, _ in made}) == 3
    assert len({s.handle for _, s in made}) == 3


@pytest.mark.gen_test
async def test_idle_expiry_refused_before_any_pruning(store, clock):
    heard = Heard()
    store.add_end_listener(heard)
    token, session = await _new(store)
    clock.advance(IDLE - 1)
    assert await store.get(token) is not None
    clock.advance(1)
    assert await store.get(token) is None
    assert heard.calls == [(session.key, 1, END_EXPIRED)]


@pytest.mark.gen_test
async def test_touch_pushes_back_idle_expiry(store, clock):
    token, _ = await _new(store)
    for _ in range(3):
        clock.advance(IDLE - 10)
        session = await store.get(token)
        assert session is not None
        await store.touch(session)
    assert (await store.get(token)).last_seen == pytest.approx(clock.now)
    clock.advance(IDLE - 1)
    assert await store.get(token) is not None


@pytest.mark.gen_test
async def test_touch_within_granularity_does_not_write(store, clock):
    token, session = await _new(store)
    clock.advance(0.5)
    await store.touch(session)
    assert (await store.get(token)).last_seen == pytest.approx(session.created_at)


@pytest.mark.gen_test
async def test_absolute_expiry_despite_activity(store, clock):
    token, _ = await _new(store)
    elapsed = 0.0
    while elapsed < MAX_AGE - 60:
        clock.advance(60)
        elapsed += 60
        session = await store.get(token)
        assert session is not None
        await store.touch(session)
    clock.advance(MAX_AGE - elapsed)
    assert await store.get(token) is None


@pytest.mark.gen_test
async def test_end_notifies_once(store):
    heard = Heard()
    store.add_end_listener(heard)
    token, session = await _new(store, 4)
    assert await store.end(session.key, END_LOGOUT) is True
    assert await store.get(token) is None
    assert await store.end(session.key, END_LOGOUT) is False
    assert heard.calls == [(session.key, 4, END_LOGOUT)]


@pytest.mark.gen_test
async def test_end_by_handle_only_for_its_owner(store):
    token, session = await _new(store, 1)
    assert await store.end_by_handle(2, session.handle, END_REVOKED) is False
    assert await store.end_by_handle(1, "no-such-handle", END_REVOKED) is False
    assert await store.get(token) is not None
    assert await store.end_by_handle(1, session.handle, END_REVOKED) is True
    assert await store.get(token) is None
    assert await store.end_by_handle(1, session.handle, END_REVOKED) is False


@pytest.mark.gen_test
async def test_end_all_for_user_except_one(store):
    heard = Heard()
    store.add_end_listener(heard)
    (t1, s1), (t2, s2), (t3, s3) = [await _new(store, 1) for _ in range(3)]
    other, _ = await _new(store, 2)
    assert await store.end_all_for_user(1, END_LOGOUT, except_key=s2.key) == 2
    assert await store.get(t1) is None
    assert await store.get(t3) is None
    assert await store.get(t2) is not None
    assert await store.get(other) is not None
    assert sorted(heard.calls) == sorted([(s1.key, 1, END_LOGOUT), (s3.key, 1, END_LOGOUT)])
    assert await store.end_all_for_user(1, END_LOGOUT) == 1
    assert await store.end_all_for_user(1, END_LOGOUT) == 0


@pytest.mark.gen_test
async def test_list_oldest_first_without_expired(store, clock):
    _, first = await _new(store, 1)
    clock.advance(10)
    token2, second = await _new(store, 1)
    clock.advance(10)
    _, third = await _new(store, 1)
    await _new(store, 2)
    assert [s.handle for s in await store.list_for_user(1)] == [
        first.handle,
        second.handle,
        third.handle,
    ]
    # Keep only the second alive past the idle timeout of the others.
    clock.advance(IDLE - 15)
    await store.touch(await store.get(token2))
    clock.advance(20)
    assert [s.handle for s in await store.list_for_user(1)] == [second.handle]
    assert await store.list_for_user(99) == []


@pytest.mark.gen_test
async def test_per_user_cap_ends_the_oldest(store, clock):
    heard = Heard()
    store.add_end_listener(heard)
    made = []
    for _ in range(PER_USER):
        made.append(await _new(store, 1))
        clock.advance(1)
    token, _ = await _new(store, 1)
    assert await store.get(made[0][0]) is None
    assert all([await store.get(t) is not None for t, _ in made[1:]])
    assert await store.get(token) is not None
    assert len(await store.list_for_user(1)) == PER_USER
    assert heard.calls == [(made[0][1].key, 1, END_CAPPED)]
    # Other users are not affected by user 1's cap.
    await _new(store, 2)
    assert len(await store.list_for_user(1)) == PER_USER


@pytest.mark.gen_test
async def test_expired_sessions_do_not_count_against_the_cap(store, clock):
    old = [await _new(store, 1) for _ in range(PER_USER - 1)]
    clock.advance(IDLE / 2)
    live_token, _ = await _new(store, 1)
    clock.advance(IDLE / 2 + 1)
    fresh = [await _new(store, 1) for _ in range(PER_USER - 1)]
    # The cap is full of live sessions again, but only expired ones made room.
    assert await store.get(live_token) is not None
    assert all([await store.get(t) is not None for t, _ in fresh])
    assert all([await store.get(t) is None for t, _ in old])
    assert len(await store.list_for_user(1)) == PER_USER


@pytest.mark.gen_test
async def test_pruner_ends_only_expired_sessions(store, clock):
    heard = Heard()
    store.add_end_listener(heard)
    idle_token, idle_session = await _new(store, 1)
    clock.advance(IDLE / 2)
    live_token, _ = await _new(store, 2)
    clock.advance(IDLE / 2)
    pruned = await store.prune_expired()
    assert heard.calls == [(idle_session.key, 1, END_EXPIRED)]
    assert await store.get(live_token) is not None
    assert await store.get(idle_token) is None
    if isinstance(store, MemorySessionStore):
        assert pruned == 1
        assert await store.count() == 1
    assert await store.prune_expired() == 0
    assert len(heard.calls) == 1


@pytest.mark.gen_test
async def test_memory_pruner_cost_tracks_expired_not_live(clock):
    store = MemorySessionStore(idle_timeout=IDLE, max_age=MAX_AGE, per_user=10, clock=clock)
    for uid in range(500):
        await _new(store, uid)
    clock.advance(IDLE + 1)
    live = [await _new(store, 10_000 + uid) for uid in range(50)]
    assert await store.prune_expired() == 500
    assert await store.count() == 50
    assert all([await store.get(t) is not None for t, _ in live])


# -- Redis only ----------------------------------------------------------------------------


@pytest.fixture
def redis_store(redis_env, clock, io_loop):
    from plp.redis.sessions import RedisSessionStore

    url, prefix = redis_env
    made = []

    def make(**overrides):
        kwargs = dict(idle_timeout=IDLE, max_age=MAX_AGE, per_user=PER_USER, clock=clock)
        kwargs.update(overrides)
        store = RedisSessionStore(url, prefix=prefix, **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        io_loop.run_sync(store.close)


def _raw(redis_env) -> redis_sync.Redis:
    url, _ = redis_env
    return redis_sync.Redis.from_url(url, decode_responses=True)


@pytest.mark.gen_test
async def test_redis_keeps_only_hashed_keys_with_ttls(redis_store, redis_env, clock):
    store = redis_store()
    token, session = await _new(store)
    _, prefix = redis_env
    raw = _raw(redis_env)
    try:
        keys = raw.keys(prefix + "*")
        assert prefix + "s:" + session.key in keys
        for key in keys:
            assert token not in key
            kind = raw.type(key)
            values = (
                raw.hgetall(key).values()
                if kind == "hash"
                else raw.zrange(key, 0, -1)
                if kind == "zset"
                else []
            )
            assert not any(token in v for v in values)
        ttl = raw.pttl(prefix + "s:" + session.key)
        assert 0 < ttl <= IDLE * 1000
        assert raw.pttl(prefix + "u:1") > 0
        # A touch refreshes the TTL from the new idle deadline.
        clock.advance(IDLE / 2)
        await store.touch(await store.get(token))
        # Only the absolute deadline caps the TTL; with IDLE << MAX_AGE it is the idle one.
        assert raw.pttl(prefix + "s:" + session.key) > (IDLE / 2) * 1000
    finally:
        raw.close()


@pytest.mark.gen_test
async def test_redis_ttl_is_capped_by_absolute_deadline(redis_store, redis_env, clock):
    store = redis_store(idle_timeout=100.0, max_age=150.0)
    token, session = await _new(store)
    clock.advance(90)
    await store.touch(await store.get(token))
    raw = _raw(redis_env)
    try:
        # Idle would allow 100 s more; the absolute deadline leaves 60.
        assert 0 < raw.pttl(redis_env[1] + "s:" + session.key) <= 60_000
    finally:
        raw.close()


@pytest.mark.gen_test
async def test_redis_ttl_removes_sessions_server_side(redis_store, redis_env):
    store = redis_store(idle_timeout=0.2, max_age=10.0)
    token, session = await _new(store)
    raw = _raw(redis_env)
    try:
        # Redis's own clock is the subject here: its TTL, not the store, removes the key.
        await wait_until(
            lambda: not raw.exists(redis_env[1] + "s:" + session.key),
            what="Redis to expire the session key",
        )
        assert not raw.exists(redis_env[1] + "s:" + session.key)
    finally:
        raw.close()
    assert await store.get(token) is None


@pytest.mark.gen_test
async def test_redis_stores_share_sessions_and_end_notices(redis_store):
    a, b = redis_store(), redis_store()
    heard_a, heard_b = Heard(), Heard()
    a.add_end_listener(heard_a)
    b.add_end_listener(heard_b)
    await a.start()
    await b.start()
    token, session = await _new(a, 5)
    assert (await b.get(token)).handle == session.handle
    assert await b.end_by_handle(5, session.handle, END_REVOKED) is True
    assert await a.get(token) is None
    # A later notice from a third store is a barrier: Redis delivers a channel's messages in
    # order, so once both have heard it, a duplicate of the first (b's own notice coming
    # back) would have arrived before it.
    c = redis_store()
    _, marker = await _new(c, 6)
    await c.end(marker.key, END_LOGOUT)
    barrier = (marker.key, 6, END_LOGOUT)
    await wait_until(lambda: barrier in heard_a.calls and barrier in heard_b.calls)
    assert heard_a.calls == [(session.key, 5, END_REVOKED), barrier]
    assert heard_b.calls == [(session.key, 5, END_REVOKED), barrier]


@pytest.mark.gen_test
async def test_redis_prune_announces_expiry_to_other_processes(redis_store, clock):
    a, b = redis_store(), redis_store()
    heard_b = Heard()
    b.add_end_listener(heard_b)
    await b.start()
    _, session = await _new(a, 3)
    clock.advance(IDLE + 1)
    assert await a.prune_expired() == 0  # TTL removes; prune only announces and tidies
    await wait_until(lambda: heard_b.calls, what="b to hear of the expiry")
    assert heard_b.calls == [(session.key, 3, END_EXPIRED)]
    assert await a.count() == 0


@pytest.mark.gen_test
async def test_redis_ignores_malformed_notices(redis_store, redis_env):
    store = redis_store()
    heard = Heard()
    store.add_end_listener(heard)
    await store.start()
    raw = _raw(redis_env)
    try:
        for junk in ("not json", "{}", '{"o":"x","k":"k","u":"nan?","r":"x"}', "[1]"):
            raw.publish(store.channel, junk)
    finally:
        raw.close()
    other = redis_store()
    _, session = await _new(other, 8)
    await other.end(session.key, END_LOGOUT)
    await wait_until(lambda: heard.calls, what="the well-formed notice")
    assert heard.calls == [(session.key, 8, END_LOGOUT)]


@pytest.mark.gen_test
async def test_redis_unreachable_raises_unavailable(clock):
    from plp.redis.sessions import RedisSessionStore

    # Port 1 on loopback: nothing listens, connecting is refused at once.
    store = RedisSessionStore(
        "redis://127.0.0.1:1/0", idle_timeout=IDLE, max_age=MAX_AGE, per_user=3, clock=clock
    )
    try:
        for call in (
            store.ping(),
            store.get("token"),
            store.create(1, ip="x", user_agent="y"),
            store.end("k", END_LOGOUT),
            store.list_for_user(1),
            store.prune_expired(),
        ):
            with pytest.raises(SessionStoreUnavailable):
                await call
        with pytest.raises(SessionStoreUnavailable):
            await store.start()
    finally:
        await store.close()


# -- throttles -----------------------------------------------------------------------------


@pytest.fixture
def make_throttle(backend, clock, io_loop):
    kind, env = backend
    made = []

    def make(
        account_limit: int = 3,
        address_limit: int = 5,
        registration_limit: int = 2,
        challenge_limit: int = 3,
    ):
        kwargs = dict(
            account_limit=account_limit,
            address_limit=address_limit,
            registration_limit=registration_limit,
            challenge_limit=challenge_limit,
            clock=clock,
        )
        if kind == "memory":
            throttle = MemoryThrottle(**kwargs)
        else:
            from plp.redis.throttle import RedisThrottle

            url, prefix = env
            throttle = RedisThrottle(url, prefix=prefix, **kwargs)
        made.append(throttle)
        return throttle

    yield make
    for throttle in made:
        io_loop.run_sync(throttle.close)


@pytest.mark.gen_test
async def test_throttle_account_back_off_doubles_and_resets(make_throttle, clock):
    throttle = make_throttle(account_limit=3)
    for _ in range(2):
        assert await throttle.login_wait("bob", "1.1.1.1") == (0.0, "")
        await throttle.login_failed("bob", "1.1.1.1")
    await throttle.login_failed("bob", "1.1.1.2")
    wait, which = await throttle.login_wait("bob", "9.9.9.9")
    assert which == "account"
    assert wait == pytest.approx(30.0)
    assert (await throttle.login_wait("alice", "1.1.1.1"))[0] == 0.0
    clock.advance(30)
    assert await throttle.login_wait("bob", "1.1.1.1") == (0.0, "")
    await throttle.login_failed("bob", "1.1.1.1")
    assert (await throttle.login_wait("bob", "1.1.1.1"))[0] == pytest.approx(60.0)
    await throttle.login_succeeded("bob")
    assert await throttle.login_wait("bob", "1.1.1.1") == (0.0, "")


@pytest.mark.gen_test
async def test_throttle_block_caps_at_max(make_throttle, clock):
    throttle = make_throttle(account_limit=1, address_limit=1000)
    for _ in range(20):
        await throttle.login_failed("eve", "2.2.2.2")
    assert (await throttle.login_wait("eve", "2.2.2.2"))[0] == pytest.approx(MAX_BLOCK)


@pytest.mark.gen_test
async def test_throttle_address_window_slides(make_throttle, clock):
    throttle = make_throttle(account_limit=100, address_limit=3)
    for name in ("a1", "a2", "a3"):
        assert (await throttle.login_wait(name, "3.3.3.3"))[0] == 0.0
        await throttle.login_failed(name, "3.3.3.3")
        clock.advance(10)
    wait, which = await throttle.login_wait("someone-else", "3.3.3.3")
    assert which == "address"
    assert wait == pytest.approx(300 - 30)
    assert await throttle.login_wait("someone-else", "4.4.4.4") == (0.0, "")
    clock.advance(wait)
    assert await throttle.login_wait("someone-else", "3.3.3.3") == (0.0, "")


@pytest.mark.gen_test
async def test_throttle_registrations_per_address(make_throttle, clock):
    throttle = make_throttle(registration_limit=2)
    for _ in range(2):
        assert await throttle.registration_wait("5.5.5.5") == 0.0
        await throttle.registered("5.5.5.5")
    assert await throttle.registration_wait("5.5.5.5") == pytest.approx(3600.0)
    assert await throttle.registration_wait("6.6.6.6") == 0.0
    clock.advance(3600)
    assert await throttle.registration_wait("5.5.5.5") == 0.0


@pytest.mark.gen_test
async def test_throttle_passkey_challenges_per_address(make_throttle, clock):
    throttle = make_throttle(challenge_limit=3)
    for _ in range(3):
        assert await throttle.challenge_wait("7.7.7.7") == 0.0
        await throttle.challenge_made("7.7.7.7")
    assert await throttle.challenge_wait("7.7.7.7") == pytest.approx(60.0)
    assert await throttle.challenge_wait("8.8.8.8") == 0.0
    clock.advance(30)
    assert await throttle.challenge_wait("7.7.7.7") == pytest.approx(30.0)
    clock.advance(30)
    assert await throttle.challenge_wait("7.7.7.7") == 0.0
    if isinstance(throttle, MemoryThrottle):  # Redis keys expire by themselves
        assert await throttle.prune() == 1  # the address is forgotten after its minute


@pytest.mark.gen_test
async def test_redis_throttle_is_shared_between_processes(redis_env, clock):
    from plp.redis.throttle import RedisThrottle

    url, prefix = redis_env
    kwargs = dict(account_limit=2, address_limit=30, registration_limit=30, clock=clock)
    a = RedisThrottle(url, prefix=prefix, **kwargs)
    b = RedisThrottle(url, prefix=prefix, **kwargs)
    try:
        await a.login_failed("carol", "7.7.7.7")
        await b.login_failed("carol", "7.7.7.8")
        assert (await a.login_wait("carol", "7.7.7.9"))[1] == "account"
        assert (await b.login_wait("carol", "7.7.7.9"))[1] == "account"
    finally:
        await a.close()
        await b.close()


@pytest.mark.gen_test
async def test_sessions_carry_their_sign_in_method_and_time(store, clock):
    _, by_password = await _new(store, 1)
    clock.advance(1)
    token, by_passkey = await store.create(1, ip="10.0.0.1", user_agent="pytest", method="passkey")
    assert (by_password.method, by_passkey.method) == ("password", "passkey")
    got = await store.get(token)
    assert got.method == "passkey"
    assert got.auth_at == pytest.approx(clock())
    assert [s.method for s in await store.list_for_user(1)] == ["password", "passkey"]


@pytest.mark.gen_test
async def test_renew_auth_moves_only_the_sign_in_time(store, clock):
    token, session = await _new(store, 1)
    signed_in_at = session.auth_at
    clock.advance(50)
    assert await store.renew_auth(session) is True
    got = await store.get(token)
    assert got.auth_at == pytest.approx(signed_in_at + 50)
    # Same session: same handle and creation time; the absolute expiry does not move.
    assert (got.handle, got.created_at) == (session.handle, pytest.approx(session.created_at))
    await store.end(session.key, END_LOGOUT)
    assert await store.renew_auth(session) is False
    assert await store.get(token) is None  # renewing an ended session does not revive it
