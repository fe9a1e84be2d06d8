"""plp/context.py: backends picked in one place, wired together, started and closed alike;
typed hooks; and the Redis broker's event format, which the node's Lua scripts publish too."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from plp.chat.hub import CLOSE_SESSION_ENDED, LocalBroker, Subscriber
from plp.context import Backends, make_backends, make_context
from plp.sessions.base import END_REVOKED
from plp.sessions.memory import MemorySessionStore
from plp.throttle import MemoryThrottle
from tests.support import backends

WAIT = 10.0


def subscriber(session_key: str, closed: list[int]) -> Subscriber:
    """A hub subscriber whose close codes land in `closed`."""
    return Subscriber(
        conn_id="c1",
        user_id=1,
        user={"id": 1},
        session_key=session_key,
        address="10.0.0.1",
        send=lambda frame: True,
        close=lambda code, reason: closed.append(code),
    )


async def ending_a_session_closes_its_socket(parts: Backends) -> list[int]:
    """Create a session, put a socket of it in the hub, end it: the close codes seen."""
    closed: list[int] = []
    _token, session = await parts.store.create(1, ip="10.0.0.1", user_agent="test")
    parts.hub.add(subscriber(session.key, closed))
    assert await parts.store.end(session.key, END_REVOKED)
    return closed


@pytest.mark.gen_test(timeout=20)
async def test_memory_backends_are_wired_started_and_closed_alike(settings):
    parts = make_backends(settings)
    assert isinstance(parts.store, MemorySessionStore)
    assert isinstance(parts.throttle, MemoryThrottle)
    assert isinstance(parts.hub.broker, LocalBroker)
    await parts.start()
    assert await ending_a_session_closes_its_socket(parts) == [CLOSE_SESSION_ENDED]
    await parts.hub.shutdown(grace=0.1)
    await parts.close()  # after the hub's shutdown, as the server does
    await parts.close()


@pytest.fixture
def redis_settings(settings, io_loop):
    """Settings for session-backend redis on a database of its own (flushed after)."""
    import redis as redis_sync

    base = backends.redis_url().rsplit("/", 1)[0]
    url = f"{base}/{random.randint(1, 63)}"
    raw = redis_sync.Redis.from_url(url)
    raw.flushdb()
    yield settings.replace(session_backend="redis", redis_url=url)
    raw.flushdb()
    raw.close()


@pytest.mark.gen_test(timeout=30)
async def test_redis_backends_are_wired_started_and_closed_alike(redis_settings):
    from plp.redis.broker import RedisBroker
    from plp.redis.sessions import RedisSessionStore
    from plp.redis.throttle import RedisThrottle

    parts = make_backends(redis_settings)
    assert isinstance(parts.store, RedisSessionStore)
    assert isinstance(parts.throttle, RedisThrottle)
    assert isinstance(parts.hub.broker, RedisBroker)
    await parts.start()
    try:
        assert await ending_a_session_closes_its_socket(parts) == [CLOSE_SESSION_ENDED]
        await parts.hub.shutdown(grace=0.1)
    finally:
        await parts.close()
        await parts.close()


def test_context_hooks_are_typed_lists_and_shutdown_is_the_hubs(settings, db):
    ctx = make_context(settings, db=db)
    try:
        assert ctx.hooks.on_shutdown == [ctx.hub.shutdown]
        assert ctx.hooks.on_request == ctx.hooks.on_prune == ctx.hooks.on_message_stored == []
        seen: list[Any] = []
        ctx.hooks.on_message_stored.append(seen.append)
        ctx.hooks.on_message_stored.append(lambda message: seen.append("second"))
        ctx.hooks.message_stored("m")  # type: ignore[arg-type]
        assert seen == ["m", "second"]
    finally:
        ctx.hasher.close()


def test_metrics_listen_on_hooks_and_leave_the_database_alone(settings, db):
    metrics_module = pytest.importorskip("plp.metrics")
    ctx = make_context(settings, db=db)
    try:
        metrics = metrics_module.Metrics(ctx)
        assert "add_message" not in vars(ctx.db)  # not wrapped
        ctx.hooks.message_stored(object())  # type: ignore[arg-type]
        ctx.hooks.request_done(204, 0.01)
        ctx.hooks.pruned(3, 0.001)
        sample = metrics.registry.get_sample_value
        assert sample("plp_chat_messages_stored_total") == 1
        assert sample("plp_http_requests_total", {"status": "204"}) == 1
        assert sample("plp_sessions_pruned_total") == 3
    finally:
        ctx.hasher.close()


# ------------------------------------------------------------ the broker's event format


def test_broker_events_round_trip():
    from plp.redis.broker import DELETED, MESSAGE, decode_event, encode_event

    frame = '{"type":"message","text":"a b\\nc %s"}'
    assert decode_event(encode_event("o1", MESSAGE, 7, "x-1", frame)) == (
        "o1",
        MESSAGE,
        7,
        "x-1",
        frame,
    )
    assert decode_event(encode_event("o1", DELETED, 7, None, frame))[3] is None
    for junk in (None, b"bytes", "no header line", "a b c\n{}", "o m seven -\n{}"):
        with pytest.raises(ValueError):
            decode_event(junk)


@pytest.mark.gen_test(timeout=30)
async def test_presence_published_by_the_lua_scripts_decodes_as_a_broker_event():
    import redis.asyncio as aioredis

    from plp.chat.hub import ChatHub
    from plp.redis.broker import MESSAGE, decode_event
    from plp.redis.node import SCRIPT_ORIGIN, RedisNode
    from plp.redis.shared import RedisPresence, RedisSocketCounter

    url = backends.redis_url()
    prefix = backends.unique_prefix()
    node = RedisNode(url, prefix=prefix, heartbeat=3600)
    hub = ChatHub(presence=RedisPresence(node), sockets=RedisSocketCounter(node))
    client = aioredis.Redis.from_url(url, decode_responses=True)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(node.channel)
        await hub.start()
        user = {"id": 5, "name": "Ana"}
        hub.presence.arrived(3, user, "conn-9")
        hub.presence.departed(3, user)
        events = [decode_event(await next_message(pubsub)) for _ in range(2)]
    finally:
        await node.close()
        await pubsub.aclose()
        await client.aclose()
        backends.delete_prefix(url, prefix)
    (o1, k1, ch1, ex1, f1), (o2, k2, ch2, ex2, f2) = events
    assert (o1, k1, ch1, ex1) == (SCRIPT_ORIGIN, MESSAGE, 3, "conn-9")
    assert (o2, k2, ch2, ex2) == (SCRIPT_ORIGIN, MESSAGE, 3, None)
    assert json.loads(f1) == {"type": "presence", "channel": 3, "user": user, "status": "online"}
    assert json.loads(f2)["status"] == "offline"


async def next_message(pubsub: Any) -> str:
    """The next message's data on a pub/sub subscription (fails after WAIT seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        message = await pubsub.get_message(timeout=0.5)
        if message is not None:
            return message["data"]
    raise AssertionError("no message published")
