"""Crossing class boundaries (SPEC §12), one process: every way a pupil of class A might reach
class B answers exactly like an id that does not exist, and removal applies to open sockets at
once. Real HTTP and WebSocket clients against the served app, real SQLite."""

from __future__ import annotations

import asyncio
import json

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from tests.support import body
from tests.support.ws import Peer, ws_url

REMOVAL_BOUND = 1.0  # seconds: SPEC §12's "within 1 s"


@pytest.fixture
def connect(http_server, base_url):
    opened: list[WebSocketClientConnection] = []

    async def open_(cookie: str) -> WebSocketClientConnection:
        conn = await websocket_connect(HTTPRequest(ws_url(base_url), headers={"Cookie": cookie}))
        opened.append(conn)
        return conn

    yield open_
    for conn in opened:
        conn.close()


@pytest.fixture
def person(make_user, session_cookie, make_client, connect):
    """A user with a signed-in HTTP client (`.http`) and a way to open sockets (`.socket()`)."""

    async def make(username: str, role: str = "student"):
        user = await make_user(username, role)
        cookie = await session_cookie(user.id)
        client = make_client()
        name, value = cookie.split("=", 1)
        client.cookies[name] = value
        client.user = user

        async def socket() -> Peer:
            peer = Peer(await connect(cookie), user, cookie)
            await peer.expect("hello")
            return peer

        client.socket = socket
        return client

    return make


@pytest.fixture
def school(person):
    """Teachers tess (class A, channel a) and tom (class B, channel b); pupils amy (A) and
    ben (B); a message of ben's in b."""

    async def make():
        people = {
            "tess": await person("tess", "teacher"),
            "tom": await person("tom", "teacher"),
            "amy": await person("amy"),
            "ben": await person("ben"),
        }
        ids = {}
        for teacher, pupil, key in (("tess", "amy", "a"), ("tom", "ben", "b")):
            r = await people[teacher].fetch("/api/classes", "POST", json_body={"name": key})
            made = body(r)["class"]
            r = await people[pupil].fetch(
                "/api/classes/join", "POST", json_body={"code": made["joinCode"]}
            )
            assert r.code == 200, r.body
            r = await people[teacher].fetch(
                "/api/channels", "POST", json_body={"name": key, "classId": made["id"]}
            )
            ids[key] = made
            ids[key + "_channel"] = body(r)["channel"]["id"]
        ids["ben_message"] = (await _stored(people["ben"], ids["b_channel"], "only for 5B"))["id"]
        return people, ids

    return make


async def _stored(client, channel_id: int, text: str) -> dict:
    peer = await client.socket()
    await peer.join(channel_id)
    await peer.send({"type": "send", "channel": channel_id, "text": text})
    while True:
        frame = await peer.expect_any()
        if frame["type"] == "message":
            peer.close()
            return frame["message"]


def _same(first, second) -> None:
    """Two answers a client cannot tell apart."""
    assert (first.code, body(first)) == (second.code, body(second))


@pytest.mark.gen_test(timeout=30)
async def test_a_pupil_of_a_cannot_reach_b_by_rest(school):
    people, ids = await school()
    amy = people["amy"]
    b, channel, message = ids["b"], ids["b_channel"], ids["ben_message"]
    unknown = 987654
    # History by id.
    hidden = await amy.fetch(f"/api/channels/{channel}/messages")
    assert hidden.code == 404
    _same(hidden, await amy.fetch(f"/api/channels/{unknown}/messages"))
    # Deleting B's message.
    hidden = await amy.fetch(f"/api/channels/{channel}/messages/{message}", "DELETE")
    assert hidden.code == 404
    _same(hidden, await amy.fetch(f"/api/channels/{unknown}/messages/{message}", "DELETE"))
    # Deleting B's channel: a pupil meets the role check first, the same 403 for both.
    hidden = await amy.fetch(f"/api/channels/{channel}", "DELETE")
    assert hidden.code == 403
    _same(hidden, await amy.fetch(f"/api/channels/{unknown}", "DELETE"))
    # B's class, its members, its code.
    for suffix in ("", "/members"):
        hidden = await amy.fetch(f"/api/classes/{b['id']}{suffix}")
        assert hidden.code == 404
        _same(hidden, await amy.fetch(f"/api/classes/{unknown}{suffix}"))
    r = await amy.fetch("/api/channels")
    assert [c["name"] for c in body(r)["channels"]] == ["general", "a"]
    # Nothing was deleted.
    r = await people["ben"].fetch(f"/api/channels/{channel}/messages")
    assert [m["id"] for m in body(r)["messages"]] == [message]


@pytest.mark.gen_test(timeout=30)
async def test_a_teacher_of_a_cannot_manage_b(school):
    people, ids = await school()
    tess = people["tess"]
    b, channel, message = ids["b"], ids["b_channel"], ids["ben_message"]
    unknown = 987654
    for method, suffix, payload in (
        ("GET", "", None),
        ("PATCH", "", {"name": "mine now"}),
        ("DELETE", "", None),
        ("POST", "/code", None),
        ("DELETE", "/code", None),
        ("GET", "/members", None),
        ("POST", "/members", {"username": "amy"}),
        ("DELETE", f"/members/{people['ben'].user.id}", None),
    ):
        hidden = await tess.fetch(f"/api/classes/{b['id']}{suffix}", method, json_body=payload)
        assert hidden.code == 404, (method, suffix)
        other = await tess.fetch(f"/api/classes/{unknown}{suffix}", method, json_body=payload)
        _same(hidden, other)
    for path, method in (
        (f"/api/channels/{channel}", "DELETE"),
        (f"/api/channels/{channel}/messages/{message}", "DELETE"),
        (f"/api/channels/{channel}/messages", "GET"),
    ):
        hidden = await tess.fetch(path, method)
        assert hidden.code == 404, path
        _same(hidden, await tess.fetch(path.replace(str(channel), str(unknown)), method))
    # B is untouched.
    r = await people["tom"].fetch(f"/api/classes/{b['id']}")
    assert body(r)["class"]["name"] == "b" and body(r)["class"]["memberCount"] == 2


@pytest.mark.gen_test(timeout=30)
async def test_every_frame_naming_b_is_not_found(school):
    people, ids = await school()
    amy = await people["amy"].socket()
    channel = ids["b_channel"]
    for frame in (
        {"type": "join", "channel": channel},
        {"type": "send", "channel": channel, "text": "hi"},
        {"type": "typing", "channel": channel},
        {"type": "leave", "channel": channel},
    ):
        await amy.send(frame)
        hidden = await amy.expect("error", code="not_found")
        await amy.send({**frame, "channel": 987654})
        assert await amy.expect("error") == hidden, frame
    # Her own class's channel is fine.
    await amy.join(ids["a_channel"])


@pytest.mark.gen_test(timeout=30)
async def test_old_code_after_a_reset_is_refused(school, person):
    people, ids = await school()
    old = ids["a"]["joinCode"]
    r = await people["tess"].fetch(f"/api/classes/{ids['a']['id']}/code", "POST")
    new = body(r)["joinCode"]
    eve = await person("eve")
    r = await eve.fetch("/api/classes/join", "POST", json_body={"code": old})
    assert r.code == 404 and body(r)["error"] == "not_found"
    r = await eve.fetch("/api/classes/join", "POST", json_body={"code": new})
    assert r.code == 200 and body(r)["class"]["id"] == ids["a"]["id"]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("settings", [{"class_join_failures": 3}], indirect=True)
async def test_guessing_codes_ends_in_429(school, person, ctx):
    people, ids = await school()
    eve = await person("eve")
    guesses = ["AAAAAAAA", "not a code", "BBBB-BBBB"]
    for guess in guesses:
        r = await eve.fetch("/api/classes/join", "POST", json_body={"code": guess})
        assert r.code == 404, r.body
    # Over the limit: refused even with the right code, with Retry-After.
    r = await eve.fetch("/api/classes/join", "POST", json_body={"code": ids["a"]["joinCode"]})
    assert r.code == 429 and body(r)["error"] == "rate_limited"
    assert 0 < int(r.headers["Retry-After"]) <= 3600
    assert body(await eve.fetch("/api/classes"))["classes"] == []
    # The limit is per user: amy may still join B with its code.
    r = await people["amy"].fetch(
        "/api/classes/join", "POST", json_body={"code": ids["b"]["joinCode"]}
    )
    assert r.code == 200
    # The failures are audited, without what was typed.
    rows = [e for e in await ctx.db.list_audit(100) if e.event == "class_join_failed"]
    assert len(rows) == 3 and all(e.user_id == eve.user.id for e in rows)
    dumped = json.dumps([e.to_json() for e in await ctx.db.list_audit(500)])
    for secret in (*guesses, "BBBBBBBB", ids["a"]["joinCode"], ids["b"]["joinCode"]):
        assert secret not in dumped


async def _until(peer: Peer, kind: str) -> tuple[dict, list[dict]]:
    """The first frame of `kind` and the frames before it."""
    before = []
    while True:
        frame = await peer.expect_any()
        if frame["type"] == kind:
            return frame, before
        before.append(frame)


@pytest.mark.gen_test(timeout=30)
async def test_removed_pupil_loses_the_channel_at_once(school):
    people, ids = await school()
    channel = ids["a_channel"]
    amy = await people["amy"].socket()
    await amy.join(channel)
    await amy.join(1)
    tess = await people["tess"].socket()
    await tess.join(channel)
    loop = asyncio.get_running_loop()
    started = loop.time()
    r = await people["tess"].fetch(
        f"/api/classes/{ids['a']['id']}/members/{people['amy'].user.id}", "DELETE"
    )
    assert r.code == 204
    frame, _ = await _until(amy, "channel_removed")
    assert frame == {"type": "channel_removed", "channel": channel}
    assert loop.time() - started < REMOVAL_BOUND
    while True:  # her `online` (sent after tess joined) comes first
        presence, _ = await _until(tess, "presence")
        if presence["status"] == "offline":
            break
    assert presence["user"]["id"] == people["amy"].user.id
    for attempt in (
        {"type": "send", "channel": channel, "text": "still here?"},
        {"type": "join", "channel": channel},
        {"type": "typing", "channel": channel},
    ):
        await amy.send(attempt)
        await amy.expect("error", code="not_found")
    # Nothing she sent was stored; general still works for her.
    r = await people["tess"].fetch(f"/api/channels/{channel}/messages")
    assert body(r)["messages"] == []
    await amy.send({"type": "send", "channel": 1, "text": "fine"})
    await amy.expect("message", channel=1)
    r = await people["amy"].fetch("/api/channels")
    assert [c["name"] for c in body(r)["channels"]] == ["general"]


@pytest.mark.gen_test(timeout=30)
async def test_leaving_and_class_deletion_reach_open_sockets(school, person):
    people, ids = await school()
    amy = await people["amy"].socket()
    await amy.join(ids["a_channel"])
    r = await people["amy"].fetch(
        f"/api/classes/{ids['a']['id']}/members/{people['amy'].user.id}", "DELETE"
    )
    assert r.code == 204
    assert (await _until(amy, "channel_removed"))[0]["channel"] == ids["a_channel"]
    ben = await people["ben"].socket()
    await ben.join(ids["b_channel"])
    r = await people["tom"].fetch(f"/api/classes/{ids['b']['id']}", "DELETE")
    assert r.code == 204
    await ben.expect("channel_deleted", channel=ids["b_channel"])
    await ben.expect("channel_removed", channel=ids["b_channel"])
    await ben.send({"type": "send", "channel": ids["b_channel"], "text": "hello?"})
    await ben.expect("error", code="not_found")


@pytest.mark.gen_test(timeout=30)
async def test_joining_makes_channels_listed_and_joinable_at_once(school, person):
    people, ids = await school()
    eve = await person("eve")
    sock = await eve.socket()
    await sock.send({"type": "join", "channel": ids["a_channel"]})
    await sock.expect("error", code="not_found")
    r = await eve.fetch("/api/classes/join", "POST", json_body={"code": ids["a"]["joinCode"]})
    assert r.code == 200
    names = [c["name"] for c in body(await eve.fetch("/api/channels"))["channels"]]
    assert names == ["general", "a"]
    await sock.join(ids["a_channel"])  # the same socket, no reconnect


@pytest.mark.gen_test(timeout=30)
async def test_class_teacher_moderates_own_class_only(school, ctx):
    people, ids = await school()
    amy_message = await _stored(people["amy"], ids["a_channel"], "rude words")
    watcher = await people["amy"].socket()
    await watcher.join(ids["a_channel"])
    r = await people["tess"].fetch(
        f"/api/channels/{ids['a_channel']}/messages/{amy_message['id']}", "DELETE"
    )
    assert r.code == 204
    await watcher.expect("message_deleted", channel=ids["a_channel"], message=amy_message["id"])
    rows = [e for e in await ctx.db.list_audit(50) if e.event == "message_removed"]
    assert rows[0].user_id == people["amy"].user.id
    assert rows[0].detail["by"] == people["tess"].user.id
    assert "rude" not in json.dumps(rows[0].to_json())
    # School-wide: a teacher is no moderator of another's message.
    general = await _stored(people["amy"], 1, "in general")
    r = await people["tess"].fetch(f"/api/channels/1/messages/{general['id']}", "DELETE")
    assert r.code == 403 and body(r)["error"] == "forbidden"
    # A pupil of A is no moderator in A either.
    teacher_message = await _stored(people["tess"], ids["a_channel"], "homework")
    r = await people["amy"].fetch(
        f"/api/channels/{ids['a_channel']}/messages/{teacher_message['id']}", "DELETE"
    )
    assert r.code == 403


@pytest.mark.gen_test(timeout=30)
async def test_an_admin_sees_every_class_and_keeps_it_when_removed(school, person):
    people, ids = await school()
    boss = await person("boss", "admin")
    r = await boss.fetch(
        f"/api/classes/{ids['b']['id']}/members",
        "POST",
        json_body={"username": "boss", "classRole": "teacher"},
    )
    assert r.code == 201
    sock = await boss.socket()
    await sock.join(ids["b_channel"])
    r = await boss.fetch(f"/api/classes/{ids['b']['id']}/members/{boss.user.id}", "DELETE")
    assert r.code == 204
    frames = await sock.until_pong()
    assert not [f for f in frames if f["type"] == "channel_removed"]
    await sock.send({"type": "send", "channel": ids["b_channel"], "text": "still an admin"})
    await sock.expect("message")
    r = await boss.fetch(f"/api/channels/{ids['b_channel']}/messages")
    assert r.code == 200
