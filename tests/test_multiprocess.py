"""Two real plp processes sharing Redis and PostgreSQL behave as one server (SPEC §11)."""

from __future__ import annotations

import json
import random

import pytest
import redis as redis_sync

from tests import backends
from tests.conftest import PASSWORD, body
from tests.multiproc import (
    client_for,
    general_channel,
    join,
    open_socket,
    read_until,
    wait_closed,
)
from tests.support import LiveServer

pytestmark = pytest.mark.services


def _redis_db_url(url: str, db: int) -> str:
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    return f"{base}/{db}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Servers A and B on one fresh PostgreSQL database and one fresh Redis database."""
    redis_url = _redis_db_url(backends.redis_url(), random.randint(1, 63))
    base_pg = backends.postgres_url()
    pg_url, pg_name = backends.fresh_postgres_database(base_pg)
    raw = redis_sync.Redis.from_url(redis_url)
    raw.flushdb()
    env = {
        "PLP_DB": pg_url,
        "PLP_SESSION_BACKEND": "redis",
        "PLP_REDIS_URL": redis_url,
    }
    root = tmp_path_factory.mktemp("cluster")
    servers = []
    try:
        for name in ("a", "b"):
            servers.append(LiveServer(root / name, env=env).start())
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()
        raw.flushdb()
        raw.close()
        backends.drop_postgres_database(base_pg, pg_name)


def _name(prefix: str) -> str:
    return f"{prefix}{random.randint(0, 10**9)}"


@pytest.mark.gen_test(timeout=30)
async def test_cookie_from_a_works_on_b(cluster):
    a, b = cluster
    on_a = client_for(a)
    name = _name("mp")
    response = await on_a.register(name)
    assert response.code == 201, response.body
    on_b = client_for(b, on_a.cookies)
    response = await on_b.fetch("/api/users/me")
    assert response.code == 200, response.body
    assert body(response)["user"]["username"] == name
    # A login through B is seen by A too, and both list the same sessions.
    other = client_for(b)
    assert (await other.login(name)).code == 200
    listed_a = body(await on_a.fetch("/api/sessions"))["sessions"]
    listed_b = body(await on_b.fetch("/api/sessions"))["sessions"]
    assert len(listed_a) == 2
    assert {s["id"] for s in listed_a} == {s["id"] for s in listed_b}


@pytest.mark.gen_test(timeout=30)
async def test_chat_message_through_a_arrives_on_b(cluster):
    a, b = cluster
    sender = client_for(a)
    reader = client_for(b)
    assert (await sender.register(_name("snd"))).code == 201
    assert (await reader.register(_name("rdr"))).code == 201
    general = await general_channel(sender)
    ws_b = await open_socket(b, reader)
    ws_a = await open_socket(a, sender)
    try:
        await join(ws_b, general)
        await join(ws_a, general)
        # B hears that A's user came online (presence crosses processes too).
        presence = await read_until(ws_b, "presence")
        assert presence["status"] == "online"
        text = f"hello from A {random.random()}"
        ws_a.write_message(
            json.dumps({"type": "send", "channel": general, "text": text, "clientId": "c1"})
        )
        mine = await read_until(ws_a, "message")
        theirs = await read_until(ws_b, "message")
        assert theirs["message"]["text"] == text
        assert theirs["message"]["id"] == mine["message"]["id"]
        assert "clientId" not in theirs or theirs.get("clientId") is None
        # Stored once in the shared database: B's history has it.
        history = body(await reader.fetch(f"/api/channels/{general}/messages"))["messages"]
        assert [m["text"] for m in history].count(text) == 1
    finally:
        ws_a.close()
        ws_b.close()


@pytest.mark.gen_test(timeout=30)
async def test_logout_on_a_closes_socket_on_b(cluster):
    a, b = cluster
    on_a = client_for(a)
    assert (await on_a.register(_name("lo"))).code == 201
    on_b = client_for(b, on_a.cookies)
    ws_b = await open_socket(b, on_b)
    try:
        assert (await on_a.fetch("/api/auth/logout", "POST")).code == 200
        # SPEC §8: the socket of an ended session closes within 1 s of the logout.
        assert await wait_closed(ws_b, 1.0) == 4001
    finally:
        ws_b.close()
    assert (await on_b.fetch("/api/users/me")).code == 401


@pytest.mark.gen_test(timeout=30)
async def test_login_back_off_holds_across_processes(cluster):
    a, b = cluster
    name = _name("bo")
    assert (await client_for(a).register(name)).code == 201
    for i in range(5):
        server = a if i % 2 == 0 else b
        response = await client_for(server).login(name, "wrong password " + str(i))
        assert response.code == 401, response.body
    for server in (a, b):
        response = await client_for(server).login(name, PASSWORD)
        assert response.code == 429, response.body
        assert body(response)["error"] == "rate_limited"
        assert int(response.headers["Retry-After"]) >= 1


@pytest.mark.gen_test(timeout=30)
async def test_revoking_on_b_ends_the_session_on_a(cluster):
    a, b = cluster
    name = _name("rv")
    first = client_for(a)
    assert (await first.register(name)).code == 201
    second = client_for(b)
    assert (await second.login(name)).code == 200
    ws_a = await open_socket(a, first)
    try:
        sessions = body(await second.fetch("/api/sessions"))["sessions"]
        target = next(s["id"] for s in sessions if not s["current"])
        response = await second.fetch(f"/api/sessions/{target}", "DELETE")
        assert response.code == 204, response.body
        assert await wait_closed(ws_a, 5.0) == 4001
    finally:
        ws_a.close()
    assert (await first.fetch("/api/users/me")).code == 401
    assert (await second.fetch("/api/users/me")).code == 200
    # Revoking it again, from either process, is a 404.
    assert (
        await client_for(a, second.cookies).fetch(f"/api/sessions/{target}", "DELETE")
    ).code == 404
