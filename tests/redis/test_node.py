"""Socket caps and presence shared through Redis (plp/redis/node.py), node by node.

Each test runs two or three nodes (what each plp process is) in this process against the
real test Redis, under a prefix of its own. A crash is a node whose liveness key is gone
(what its TTL does) without it ever withdrawing; the tests delete the key instead of
waiting for the TTL.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from plp.chat.hub import ChatHub, Subscriber
from plp.redis.node import RedisNode
from plp.redis.shared import RedisPresence, RedisSocketCounter
from plp.sessions.base import SessionStoreUnavailable
from tests.support import backends, free_port

pytestmark = pytest.mark.services

WAIT = 10.0  # bounds a hang only


@pytest.fixture
def redis_url():
    return backends.redis_url()


@pytest.fixture
def prefix(redis_url):
    value = backends.unique_prefix()
    yield value
    backends.delete_prefix(redis_url, value)


class Node:
    """A hub wired to one RedisNode, as make_context does for session-backend redis."""

    def __init__(self, url: str, prefix: str, **kwargs: Any) -> None:
        self.node = RedisNode(url, prefix=prefix, heartbeat=3600, **kwargs)
        self.sockets = RedisSocketCounter(self.node)
        self.presence = RedisPresence(self.node)
        self.hub = ChatHub(presence=self.presence, sockets=self.sockets)
        self.frames: list[str] = []

    async def admit(self, conn_id: str, user_id: int, address: str = "10.0.0.1") -> str | None:
        return await self.hub.admit(conn_id, user_id, address, 5, 1000)

    def connect(self, conn_id: str, user_id: int) -> Subscriber:
        sub = Subscriber(
            conn_id=conn_id,
            session_key=f"k-{conn_id}",
            user_id=user_id,
            user={"id": user_id, "username": f"u{user_id}", "displayName": "U", "role": "x"},
            address="10.0.0.1",
            send=self.frames.append,
            close=lambda code, reason: None,
        )
        self.hub.add(sub)
        return sub

    async def flush(self) -> None:
        """Wait until every change queued before now is written (the queue is ordered)."""
        await self.presence.others(0, 0)


@pytest.fixture
def nodes(redis_url, prefix, io_loop):
    """`await nodes()`: a started node; all are closed after the test."""
    made: list[Node] = []

    async def make(**kwargs: Any) -> Node:
        node = Node(redis_url, prefix, **kwargs)
        made.append(node)
        await node.hub.start()
        return node

    yield make
    for node in made:
        io_loop.run_sync(node.node.close)


async def presence_frames(pubsub: Any, until: tuple[int, str]) -> list[tuple[int, str]]:
    """(user id, status) of presence frames published, up to and including `until`."""
    seen: list[tuple[int, str]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while until not in seen:
        assert loop.time() < deadline, seen
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is None:
            continue
        header, frame = message["data"].split("\n", 1)
        event = json.loads(frame)
        if event["type"] == "presence":
            seen.append((event["user"]["id"], event["status"]))
    return seen


@pytest.fixture
def published(redis_url, prefix, io_loop):
    """`await published()`: a subscriber to the chat channel the nodes publish presence on."""
    opened: list[Any] = []

    async def subscribe() -> Any:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        pubsub = client.pubsub()
        opened.append((client, pubsub))
        probe = Node(redis_url, prefix)  # only for the channel's name
        await pubsub.subscribe(probe.node.channel)
        await probe.node.close()
        return pubsub

    yield subscribe
    for client, pubsub in opened:
        io_loop.run_sync(pubsub.aclose)
        io_loop.run_sync(client.aclose)


@pytest.mark.gen_test(timeout=30)
async def test_caps_count_sockets_on_every_node(nodes):
    a, b = await nodes(), await nodes()
    for i in range(3):
        assert await a.admit(f"a{i}", 1) is None
    for i in range(2):
        assert await b.admit(f"b{i}", 1) is None
    assert await a.admit("a9", 1) == "user"
    assert await b.admit("b9", 1) == "user"
    assert await b.admit("other", 2) is None  # another user is not affected
    a.hub.release("a0")
    a.hub.release("a0")  # twice is harmless: one slot back, not two
    await a.flush()
    assert await b.admit("b2", 1) is None
    assert await b.admit("b3", 1) == "user"


@pytest.mark.gen_test(timeout=30)
async def test_address_cap_spans_nodes(nodes):
    a, b = await nodes(), await nodes()
    assert await a.hub.admit("a0", 1, "10.9.9.9", 5, 2) is None
    assert await b.hub.admit("b0", 2, "10.9.9.9", 5, 2) is None
    assert await b.hub.admit("b1", 3, "10.9.9.9", 5, 2) == "address"
    assert await a.hub.admit("a1", 3, "10.8.8.8", 5, 2) is None


@pytest.mark.gen_test(timeout=30)
async def test_a_crashed_node_stops_counting_and_is_reaped(redis_url, prefix, nodes, published):
    events = await published()
    raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        crashed, survivor = await nodes(), await nodes()
        for i in range(5):
            assert await crashed.admit(f"c{i}", 1) is None
        crashed.hub.join(crashed.connect("c0", 1), 7)
        await crashed.flush()
        assert await survivor.admit("s0", 1) == "user"
        assert [u["id"] for u in await survivor.presence.others(7, 0)] == [1]
        # The crashed node never withdraws; its liveness key expires (deleted here).
        assert await raw.delete(f"{prefix}node:{crashed.node.node}") == 1
        assert await survivor.admit("s0", 1) is None
        assert await survivor.presence.others(7, 0) == []
        # The survivor's heartbeat reaps it: one offline, and no entries of it left.
        await survivor.node.beat()
        assert await presence_frames(events, (1, "offline")) == [(1, "online"), (1, "offline")]
        assert await raw.hget(f"{prefix}ws:u:1", crashed.node.node) is None
        assert not await raw.exists(f"{prefix}pr:n:{crashed.node.node}")
        assert crashed.node.node not in await raw.smembers(f"{prefix}nodes")
        # A node that was only cut off comes back: its heartbeat finds it was reaped and
        # writes its whole state again, announcing its user online again.
        await crashed.node.beat()
        await crashed.flush()
        assert await presence_frames(events, (1, "online")) == [(1, "online")]
        assert await survivor.admit("s1", 1) == "user"  # 5 on the old node + 1 here
    finally:
        await raw.aclose()


@pytest.mark.gen_test(timeout=30)
async def test_presence_online_and_offline_once_across_nodes(nodes, published):
    events = await published()
    a, b = await nodes(), await nodes()
    on_a = a.connect("a1", 1)
    a.hub.join(on_a, 3)
    await a.flush()
    assert [u["id"] for u in await b.presence.others(3, 2)] == [1]
    # The same user on a second node: already online, nothing announced.
    on_b = b.connect("b1", 1)
    b.hub.join(on_b, 3)
    await b.flush()
    # Leaving one node while still on the other: not offline.
    a.hub.remove(on_a)
    marker = a.connect("a2", 2)
    a.hub.join(marker, 3)
    assert await presence_frames(events, (2, "online")) == [(1, "online"), (2, "online")]
    assert sorted(u["id"] for u in await a.presence.others(3, 0)) == [1, 2]
    # The last socket anywhere: offline, once.
    b.hub.remove(on_b)
    assert await presence_frames(events, (1, "offline")) == [(1, "offline")]
    assert [u["id"] for u in await a.presence.others(3, 0)] == [2]


@pytest.mark.gen_test(timeout=30)
async def test_deleted_channel_forgets_presence_silently(nodes, published):
    events = await published()
    a = await nodes()
    a.hub.join(a.connect("a1", 1), 4)
    a.hub.drop_channel(4, '{"type":"channel_deleted","channel":4}')
    await a.flush()
    assert await a.presence.others(4, 0) == []
    a.hub.join(a.connect("a2", 2), 5)  # marker: nothing about channel 4 came before it
    assert await presence_frames(events, (2, "online")) == [(1, "online"), (2, "online")]


@pytest.mark.gen_test(timeout=30)
async def test_clean_shutdown_announces_offline_and_frees_slots(nodes, published):
    events = await published()
    a, b = await nodes(), await nodes()
    a.hub.join(a.connect("a1", 1), 6)
    for i in range(5):
        assert await a.admit(f"x{i}", 9) is None
    await a.hub.shutdown(grace=0)
    assert await presence_frames(events, (1, "offline")) == [(1, "online"), (1, "offline")]
    assert await b.admit("b0", 9) is None


@pytest.mark.gen_test(timeout=30)
async def test_unreachable_redis_refuses_admission_with_unavailable(prefix):
    node = Node(f"redis://127.0.0.1:{free_port()}/0", prefix)
    with pytest.raises(SessionStoreUnavailable):
        await node.hub.start()
    with pytest.raises(SessionStoreUnavailable):
        await node.admit("a0", 1)
    with pytest.raises(SessionStoreUnavailable):
        await node.presence.others(1, 0)
    await node.node.close()
