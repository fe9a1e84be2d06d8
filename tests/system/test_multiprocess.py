"""Two real plp processes sharing Redis and PostgreSQL behave as one server (SPEC §11)."""

from __future__ import annotations

import json
import random
import shutil
import signal
from typing import Any

import pytest
import redis as redis_sync
from tornado.httpclient import HTTPClientError

from tests.support import PASSWORD, LiveServer, backends, body, wait_until
from tests.support.multiproc import (
    client_for,
    general_channel,
    join,
    open_socket,
    read_frame,
    read_until,
    two_processes,
    wait_closed,
)

RETRY_FOR = 20.0  # how long a test polls for something eventual; bounds a hang only

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Servers A and B on one fresh PostgreSQL database and one fresh Redis database."""
    with two_processes(tmp_path_factory.mktemp("cluster")) as pair:
        yield pair


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


async def _refused(server: Any, client: Any) -> HTTPClientError:
    """The handshake's refusal (the test fails if the socket opens)."""
    try:
        ws = await open_socket(server, client)
    except HTTPClientError as err:
        return err
    ws.close()
    raise AssertionError("the socket was accepted")


async def _open_when_allowed(server: Any, client: Any, refusal: int) -> Any:
    """Open a socket, retrying while the handshake answers `refusal` (something eventual)."""

    async def opened() -> Any:
        try:
            return await open_socket(server, client)
        except HTTPClientError as err:
            assert err.code == refusal, err
            return None

    return await wait_until(opened, RETRY_FOR, f"the handshake to stop answering {refusal}", 0.1)


async def _user_id(client: Any) -> int:
    return body(await client.fetch("/api/users/me"))["user"]["id"]


async def _presence_until(ws: Any, user_id: int, status: str) -> list[tuple[int, str]]:
    """(user id, status) of every presence frame read, up to this user's `status`."""
    seen: list[tuple[int, str]] = []
    while (user_id, status) not in seen:
        frame = await read_until(ws, "presence")
        seen.append((frame["user"]["id"], frame["status"]))
    return seen


@pytest.mark.gen_test(timeout=60)
async def test_socket_caps_count_both_processes(cluster):
    a, b = cluster
    on_a = client_for(a)
    assert (await on_a.register(_name("cap"))).code == 201
    on_b = client_for(b, on_a.cookies)
    sockets = [await open_socket(a, on_a) for _ in range(3)]
    sockets += [await open_socket(b, on_b) for _ in range(2)]
    try:
        # SPEC §8: at most 5 per user, wherever they are.
        for server, client in ((a, on_a), (b, on_b)):
            err = await _refused(server, client)
            assert err.code == 429, err
            assert body(err.response)["error"] == "rate_limited"
            assert int(err.response.headers["Retry-After"]) >= 1
        # Closing one on A frees a slot that B can use (once A has written the release).
        sockets[0].close()
        await wait_closed(sockets[0], 10.0)  # the close handshake is over
        sockets.append(await _open_when_allowed(b, on_b, 429))
        assert (await _refused(a, on_a)).code == 429
    finally:
        for ws in sockets:
            ws.close()


@pytest.mark.gen_test(timeout=60)
async def test_presence_spans_processes(cluster):
    a, b = cluster
    xena, yuri, zoe = client_for(a), client_for(b), client_for(a)
    for client, prefix in ((xena, "xena"), (yuri, "yuri"), (zoe, "zoe")):
        assert (await client.register(_name(prefix))).code == 201
    x_id, z_id = await _user_id(xena), await _user_id(zoe)
    y_id = await _user_id(yuri)
    xena_on_b = client_for(b, xena.cookies)
    general = await general_channel(xena)
    sockets = []
    try:
        x_a = await open_socket(a, xena)
        sockets.append(x_a)
        await join(x_a, general)
        y_b = await open_socket(b, yuri)
        sockets.append(y_b)
        await join(y_b, general)
        # Joining on B lists the user already there through A; A hears B's user arrive.
        assert (x_id, "online") in await _presence_until(y_b, x_id, "online")
        assert (y_id, "online") in await _presence_until(x_a, y_id, "online")
        # Xena also on B, then gone from A: still online (her socket on B is in the channel).
        x_b = await open_socket(b, xena_on_b)
        sockets.append(x_b)
        await join(x_b, general)
        x_a.close()
        await wait_closed(x_a, 10.0)  # the close handshake is over
        # Zoe joining through A is a marker: A announces in order, so an offline for Xena
        # would reach Yuri before Zoe's online.
        z_a = await open_socket(a, zoe)
        sockets.append(z_a)
        await join(z_a, general)
        seen = await _presence_until(y_b, z_id, "online")
        assert (x_id, "offline") not in seen, seen
        # Her last socket anywhere goes: offline, on the other process too.
        x_b.close()
        await wait_closed(x_b, 10.0)  # the close handshake is over
        assert (x_id, "offline") in await _presence_until(y_b, x_id, "offline")
        assert (x_id, "offline") in await _presence_until(z_a, x_id, "offline")
    finally:
        for ws in sockets:
            ws.close()


@pytest.mark.gen_test(timeout=60)
async def test_crashed_process_does_not_keep_its_slots(cluster, tmp_path):
    a, _ = cluster
    c = LiveServer(tmp_path / "c", env=a.extra_env).start()
    sockets = []
    raw = redis_sync.Redis.from_url(a.extra_env["PLP_REDIS_URL"], decode_responses=True)
    try:
        on_c = client_for(c)
        assert (await on_c.register(_name("crash"))).code == 201
        user_id = await _user_id(on_c)
        on_a = client_for(a, on_c.cookies)
        sockets = [await open_socket(c, on_c) for _ in range(5)]
        assert (await _refused(a, on_a)).code == 429
        nodes = raw.hkeys(f"plp:ws:u:{user_id}")
        assert len(nodes) == 1  # every slot is C's
        c.stop(signal.SIGKILL)  # no withdrawal: the counts stay behind in Redis...
        assert (await _refused(a, on_a)).code == 429
        # ...until C's liveness key expires (NODE_TTL); expire it now rather than wait.
        assert raw.delete(f"plp:node:{nodes[0]}") == 1
        sockets.append(await open_socket(a, on_a))
    finally:
        for ws in sockets:
            ws.close()
        raw.close()
        c.stop()


@pytest.mark.gen_test(timeout=90)
async def test_frame_meeting_unreachable_redis_closes_1013_then_reconnects(tmp_path):
    if shutil.which("redis-server") is None:
        backends.missing("redis-server is not installed")
    redis_server = backends.RedisProcess(tmp_path / "redis").start()
    server = LiveServer(
        tmp_path / "a",
        env={
            "PLP_DB": str(tmp_path / "shared.sqlite3"),
            "PLP_SESSION_BACKEND": "redis",
            "PLP_REDIS_URL": redis_server.url,
        },
    ).start()
    sockets = []
    try:
        client = client_for(server)
        assert (await client.register("outage")).code == 201
        general = await general_channel(client)
        ws = await open_socket(server, client)
        sockets.append(ws)
        await join(ws, general)

        redis_server.stop()
        ws.write_message(json.dumps({"type": "send", "channel": general, "text": "lost?"}))
        # Nothing acknowledged: closed with 1013 "try again later", no message frame first.
        frame = await read_frame(ws)
        assert frame is None, frame
        assert ws.close_code == 1013
        # While Redis is down the handshake is a clear 503.
        assert (await _refused(server, client)).code == 503

        redis_server.start()
        ws = await _open_when_allowed(server, client, 503)
        sockets.append(ws)
        await join(ws, general)
        ws.write_message(
            json.dumps({"type": "send", "channel": general, "text": "back", "clientId": "c1"})
        )
        mine = await read_until(ws, "message")
        assert mine["message"]["text"] == "back" and mine["clientId"] == "c1"
        history = body(await client.fetch(f"/api/channels/{general}/messages"))["messages"]
        assert [m["text"] for m in history] == ["back"]
    finally:
        for ws in sockets:
            ws.close()
        server.stop()
        redis_server.stop()
