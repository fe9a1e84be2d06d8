"""Single-use ceremony state (plp/pending.py, plp/redis/pending.py): the same rules in memory
and in real Redis: single use, expiry, update without revival, and a bounded memory store."""

from __future__ import annotations

import asyncio

import pytest

from plp.pending import MemoryPendingStore, new_id
from tests.support import backends


@pytest.fixture(params=["memory", "redis"])
def make_pending(request, clock, io_loop):
    made = []

    def make(**kwargs):
        if request.param == "memory":
            store = MemoryPendingStore(clock=clock, **kwargs)
        else:
            from plp.redis.pending import RedisPendingStore

            url = backends.redis_url()
            prefix = backends.unique_prefix()
            request.addfinalizer(lambda: backends.delete_prefix(url, prefix))
            store = RedisPendingStore(url, prefix=prefix, clock=clock)
        made.append(store)
        return store

    yield make
    for store in made:
        io_loop.run_sync(store.close)


@pytest.mark.gen_test
async def test_take_is_single_use(make_pending):
    store = make_pending()
    key = new_id()
    await store.put("challenge", key, {"c": "abc", "user": 7}, 300)
    assert await store.get("challenge", key) == {"c": "abc", "user": 7}
    assert await store.get("other", key) is None  # kinds do not mix
    assert await store.take("challenge", key) == {"c": "abc", "user": 7}
    assert await store.take("challenge", key) is None
    assert await store.get("challenge", key) is None


@pytest.mark.gen_test
async def test_concurrent_takes_give_it_to_one(make_pending):
    store = make_pending()
    key = new_id()
    await store.put("mfa", key, {"user": 1}, 300)
    got = await asyncio.gather(*(store.take("mfa", key) for _ in range(5)))
    assert sum(1 for g in got if g is not None) == 1


@pytest.mark.gen_test
async def test_update_keeps_expiry_and_never_revives(make_pending):
    store = make_pending()
    key = new_id()
    await store.put("mfa", key, {"failures": 0}, 300)
    assert await store.update("mfa", key, {"failures": 1}) is True
    assert await store.get("mfa", key) == {"failures": 1}
    await store.take("mfa", key)
    assert await store.update("mfa", key, {"failures": 2}) is False
    assert await store.get("mfa", key) is None


@pytest.mark.gen_test
async def test_entries_expire(make_pending, clock):
    store = make_pending()
    if isinstance(store, MemoryPendingStore):
        await store.put("c", "k", {"v": 1}, 300)
        clock.advance(299)
        assert await store.get("c", "k") == {"v": 1}
        clock.advance(1)
        assert await store.get("c", "k") is None
        assert await store.take("c", "k") is None
    else:
        # Redis expires by its own clock: a short real TTL, waited on by polling.
        await store.put("c", "k", {"v": 1}, 0.05)
        for _ in range(200):
            if await store.get("c", "k") is None:
                break
            await asyncio.sleep(0.01)
        assert await store.get("c", "k") is None


@pytest.mark.gen_test
async def test_memory_store_stays_bounded_under_a_flood(clock):
    store = MemoryPendingStore(clock=clock, capacity=100)
    for n in range(10_000):
        await store.put("challenge", str(n), {"n": n}, 300)
    assert len(store) == 100
    assert await store.get("challenge", "9999") == {"n": 9999}  # the newest survive
    assert await store.get("challenge", "0") is None
    clock.advance(301)
    await store.put("challenge", "late", {}, 300)
    assert len(store) == 1  # expired entries leave at the next put
