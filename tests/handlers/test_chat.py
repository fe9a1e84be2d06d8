"""/ws/chat with real WebSocket clients against the served app: every rule of SPEC §8."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from plp.sessions.base import END_REVOKED
from tests.support import PASSWORD, body, wait_until
from tests.support.ws import WAIT, Peer, RawSocket, ws_url


@pytest.fixture
def connect(http_server, base_url):
    """Open a socket with the given headers; raises HTTPClientError when refused."""
    opened: list[WebSocketClientConnection] = []

    async def open_(headers: dict[str, str]) -> WebSocketClientConnection:
        conn = await websocket_connect(HTTPRequest(ws_url(base_url), headers=headers))
        opened.append(conn)
        return conn

    yield open_
    for conn in opened:
        conn.close()


@pytest.fixture
def peer(make_user, session_cookie, connect):
    """A signed-in user with an open socket whose hello has been read."""

    async def make(username: str, role: str = "student", *, user=None, cookie=None) -> Peer:
        if user is None:
            user = await make_user(username, role)
        if cookie is None:
            cookie = await session_cookie(user.id)
        conn = await connect({"Cookie": cookie})
        p = Peer(conn, user, cookie)
        hello = await p.expect("hello")
        assert hello["user"]["id"] == user.id
        return p

    return make


async def refused(connect, headers: dict[str, str]) -> HTTPClientError:
    with pytest.raises(HTTPClientError) as info:
        await connect(headers)
    return info.value


def audit_events(ctx) -> list:
    """(event, detail JSON) per audit row, with a coalesced row's count as `detail.count`."""
    return ctx.db._conn.execute(
        "SELECT event, CASE WHEN tally_count IS NULL THEN detail "
        "ELSE json_set(detail, '$.count', tally_count) END FROM audit ORDER BY id"
    ).fetchall()


async def rejections(ctx, count: int) -> list[dict]:
    """The ws_rejected audit details, once `count` are written (audit writes are spawned)."""

    def written() -> list[dict] | None:
        rows = [json.loads(d) for e, d in audit_events(ctx) if e == "ws_rejected"]
        return rows if len(rows) >= count else None

    return await wait_until(written, what=f"{count} ws_rejected audit rows")


# ------------------------------------------------------------------------- handshake


@pytest.mark.gen_test(timeout=20)
async def test_hello_and_ping(peer):
    alice = await peer("alice")
    await alice.send({"type": "ping"})
    await alice.expect("pong")


@pytest.mark.gen_test(timeout=20)
async def test_handshake_401_without_or_with_bad_cookie(ctx, connect, make_user, session_cookie):
    name = ctx.settings.cookie_name
    for headers in (
        {},
        {"Cookie": f"{name}=garbage"},
        {"Cookie": f"{name}=" + ctx.signer.sign("not-a-session-token")},
    ):
        err = await refused(connect, headers)
        assert err.code == 401, headers
        assert body(err.response)["error"] == "not_authenticated"
    # An ended session's cookie is refused too.
    user = await make_user("alice")
    cookie = await session_cookie(user.id)
    await ctx.store.end_all_for_user(user.id, END_REVOKED)
    err = await refused(connect, {"Cookie": cookie})
    assert err.code == 401


@pytest.mark.gen_test(timeout=20)
async def test_handshake_401_for_expired_session(ctx, clock, connect, make_user, session_cookie):
    user = await make_user("alice")
    cookie = await session_cookie(user.id)
    clock.advance(ctx.settings.session_idle_timeout + 1)
    err = await refused(connect, {"Cookie": cookie})
    assert err.code == 401


@pytest.mark.gen_test(timeout=20)
async def test_foreign_origin_403_and_audited(ctx, base_url, connect, make_user, session_cookie):
    user = await make_user("alice")
    cookie = await session_cookie(user.id)
    host = base_url.split("://", 1)[1]
    for origin in ("http://evil.example", f"https://{host}", "null"):
        err = await refused(connect, {"Cookie": cookie, "Origin": origin})
        assert err.code == 403, origin
        assert body(err.response)["error"] == "forbidden"
    # The same origin is accepted, with and without Sec-Fetch-Site.
    conn = await connect({"Cookie": cookie, "Origin": f"http://{host}"})
    assert json.loads(await conn.read_message())["type"] == "hello"
    await ctx.audit.sync()  # let the spawned audit writes and the count update run
    # One row per address and minute counts the refusals; it keeps the first one's detail.
    rejected = [json.loads(d) for e, d in audit_events(ctx) if e == "ws_rejected"]
    assert len(rejected) == 1 and rejected[0]["count"] == 3
    assert rejected[0]["reason"] == "origin" and rejected[0]["origin"] == "http://evil.example"


@pytest.mark.gen_test(timeout=20)
async def test_cors_origin_accepted(ctx, app, connect, make_user, session_cookie):
    import dataclasses

    ctx.settings = dataclasses.replace(ctx.settings, cors_origins=("https://app.school.example",))
    user = await make_user("alice")
    cookie = await session_cookie(user.id)
    conn = await connect(
        {"Cookie": cookie, "Origin": "https://app.school.example", "Sec-Fetch-Site": "cross-site"}
    )
    assert json.loads(await conn.read_message())["type"] == "hello"
    err = await refused(
        connect, {"Cookie": cookie, "Origin": "https://x.example", "Sec-Fetch-Site": "cross-site"}
    )
    assert err.code == 403


@pytest.mark.gen_test(timeout=20)
async def test_trust_proxy_scheme_decides_own_origin(ctx, base_url, connect, make_user):
    import dataclasses

    ctx.settings = dataclasses.replace(ctx.settings, trust_proxy=True)
    user = await make_user("alice")
    token, _ = await ctx.store.create(user.id, ip="127.0.0.1", user_agent="t")
    cookie = f"{ctx.settings.cookie_name}={ctx.signer.sign(token)}"
    host = base_url.split("://", 1)[1]
    proxied = {"Cookie": cookie, "X-Forwarded-Proto": "https"}
    conn = await connect({**proxied, "Origin": f"https://{host}"})
    assert json.loads(await conn.read_message())["type"] == "hello"
    # Host matches but the scheme the client used (https) does not: refused.
    err = await refused(connect, {**proxied, "Origin": f"http://{host}"})
    assert err.code == 403


@pytest.mark.gen_test(timeout=20)
async def test_sixth_socket_429_and_slot_freed(ctx, peer, connect):
    first = await peer("alice")
    others = [await peer("alice", user=first.user, cookie=first.cookie) for _ in range(4)]
    err = await refused(connect, {"Cookie": first.cookie})
    assert err.code == 429
    assert body(err.response)["error"] == "rate_limited"
    assert "Retry-After" in err.response.headers
    # Another user is unaffected.
    await peer("bob")
    # Closing one frees a slot.
    others[0].close()
    await others[0].closed()
    await wait_until(
        lambda: ctx.hub.sockets_of_user(first.user.id) == 4, what="the hub to drop the socket"
    )
    await peer("alice", user=first.user, cookie=first.cookie)
    rejected = await rejections(ctx, 1)
    assert rejected and rejected[0]["reason"] == "too_many_sockets_per_user"


@pytest.mark.gen_test(timeout=20)
async def test_sockets_per_address_cap(ctx, peer, connect, make_user, session_cookie):
    import dataclasses

    ctx.settings = dataclasses.replace(ctx.settings, sockets_per_address=2)
    await peer("alice")
    bob = await peer("bob")
    err = await refused(connect, {"Cookie": bob.cookie})
    assert err.code == 429
    carol = await make_user("carol")
    err = await refused(connect, {"Cookie": await session_cookie(carol.id)})
    assert err.code == 429
    await ctx.audit.sync()
    rejected = [json.loads(d) for e, d in audit_events(ctx) if e == "ws_rejected"]
    assert [(r["reason"], r["count"]) for r in rejected] == [("too_many_sockets_per_address", 2)]


@pytest.mark.gen_test(timeout=20)
async def test_not_an_upgrade_is_400(client, make_user, session_cookie):
    user = await make_user("alice")
    client.cookies.update(dict([(await session_cookie(user.id)).split("=", 1)]))
    r = await client.fetch("/ws/chat")
    assert r.code == 400


# --------------------------------------------------------------------- bad frames


@pytest.mark.gen_test(timeout=20)
async def test_bad_frames_get_error_frames(peer, clock):
    alice = await peer("alice")
    cases = [
        ("not json", "bad_request", None),
        ("[1, 2]", "bad_request", None),
        ('"join"', "bad_request", None),
        ({"type": 5}, "bad_request", None),
        ({"no": "type"}, "bad_request", None),
        ({"type": "dance"}, "bad_request", "dance"),
        ({"type": "join"}, "bad_request", "join"),
        ({"type": "join", "channel": "1"}, "bad_request", "join"),
        ({"type": "join", "channel": True}, "bad_request", "join"),
        ({"type": "join", "channel": 1.5}, "bad_request", "join"),
        ({"type": "join", "channel": -1}, "bad_request", "join"),
        ({"type": "join", "channel": 2**70}, "bad_request", "join"),
        ({"type": "join", "channel": 999}, "not_found", "join"),
        ({"type": "leave", "channel": 1}, "not_joined", "leave"),
        ({"type": "leave", "channel": 999}, "not_found", "leave"),
        ({"type": "typing", "channel": 999}, "not_found", "typing"),
        ({"type": "typing", "channel": 1}, "not_joined", "typing"),
        ({"type": "send", "channel": 1, "text": "hi"}, "not_joined", "send"),
        ({"type": "send", "channel": 1, "text": "hi", "clientId": "c1"}, "not_joined", "c1"),
        # An unknown channel is `not_found`, like one the user cannot see (SPEC §12).
        ({"type": "send", "channel": 999, "text": "hi"}, "not_found", "send"),
        ({"type": "send", "channel": 1, "text": 5}, "bad_request", "send"),
        ({"type": "send", "channel": 1}, "bad_request", "send"),
        ({"type": "send", "channel": 1, "text": "x", "clientId": 7}, "bad_request", "send"),
        ({"type": "send", "channel": 1, "text": "x", "clientId": "c" * 65}, "bad_request", "send"),
    ]
    for frame, code, ref in cases:
        await alice.send(frame)
        error = await alice.expect("error", code=code)
        assert isinstance(error["message"], str) and error["message"]
        assert error.get("ref") == ref, (frame, error)
        clock.advance(1.0)  # stay under 20 refusals per 10 s; that limit has its own test
    await alice.roundtrip()


@pytest.mark.gen_test(timeout=20)
async def test_text_limits(ctx, peer):
    alice = await peer("alice")
    await alice.join()
    for text, code in (("", "bad_request"), ("   \n\t ", "bad_request"), ("x" * 2001, "too_long")):
        await alice.send({"type": "send", "channel": 1, "text": text, "clientId": "t"})
        await alice.expect("error", code=code, ref="t")
    # 2000 characters after trimming is fine; surrounding whitespace is trimmed.
    await alice.send({"type": "send", "channel": 1, "text": "  " + "é" * 2000 + "  "})
    frame = await alice.expect("message", channel=1)
    assert frame["message"]["text"] == "é" * 2000
    assert "clientId" not in frame
    assert [m.text for m in await ctx.db.list_messages(1)] == ["é" * 2000]


@pytest.mark.gen_test(timeout=20)
async def test_unstorable_text_is_refused(ctx, peer):
    alice = await peer("alice")
    await alice.join()
    # NUL (PostgreSQL cannot store it) and a lone surrogate (not encodable as UTF-8),
    # written as JSON escapes exactly as a hostile client would send them.
    for escaped in ("a\\u0000b", "a\\ud800b"):
        raw = '{"type": "send", "channel": 1, "clientId": "u", "text": "' + escaped + '"}'
        await alice.conn.write_message(raw)
        await alice.expect("error", code="bad_request", ref="u")
    assert await ctx.db.list_messages(1) == []
    await alice.roundtrip()


@pytest.mark.gen_test(timeout=20)
async def test_binary_frame_closes_1003(peer):
    alice = await peer("alice")
    await alice.conn.write_message(b"\x00\x01", binary=True)
    assert await alice.closed() == 1003


@pytest.mark.gen_test(timeout=20)
async def test_oversize_frame_closes_1009(peer):
    alice = await peer("alice")
    await alice.send({"type": "send", "channel": 1, "text": "x" * (16 * 1024)})
    assert await alice.closed() == 1009


@pytest.mark.gen_test(timeout=20)
async def test_frame_just_under_16k_is_an_ordinary_refusal(peer):
    alice = await peer("alice")
    frame = json.dumps({"type": "send", "channel": 1, "text": "x" * 16000})
    assert len(frame) <= 16 * 1024
    await alice.send(frame)
    await alice.expect("error", code="too_long")


@pytest.mark.gen_test(timeout=20)
async def test_more_than_20_refusals_close_1008(peer, clock):
    alice = await peer("alice")
    for _ in range(20):
        await alice.send({"type": "dance"})
        await alice.expect("error", code="bad_request")
    await alice.send({"type": "dance"})
    await alice.expect("error", code="bad_request")
    assert await alice.closed() == 1008


@pytest.mark.gen_test(timeout=20)
async def test_refusals_spread_out_are_fine(peer, clock):
    alice = await peer("alice")
    for _ in range(30):
        await alice.send({"type": "dance"})
        await alice.expect("error", code="bad_request")
        clock.advance(1.0)  # 30 refusals over 30 s: never more than 20 in 10 s
    await alice.roundtrip()


# ------------------------------------------------------------------- messaging


@pytest.mark.gen_test(timeout=20)
async def test_message_is_acknowledged_after_commit_and_fanned_out(ctx, peer, make_client):
    alice = await peer("alice")
    bob = await peer("bob", "teacher")
    await alice.join()
    await bob.join()
    await bob.expect("presence", status="online")  # alice was there
    await alice.expect("presence", status="online")  # bob arrived
    await alice.send({"type": "send", "channel": 1, "text": " hello <b>bob</b> ", "clientId": "a1"})
    mine = await alice.expect("message", channel=1, clientId="a1")
    message = mine["message"]
    assert message["text"] == "hello <b>bob</b>"
    assert message["author"] == {
        "id": alice.user.id,
        "username": "alice",
        "displayName": "Alice",
        "role": "student",
    }
    assert message["createdAt"].endswith("Z")
    # Acknowledged means stored: the history API already has it.
    client = make_client()
    client.cookies.update(dict([alice.cookie.split("=", 1)]))
    history = body(await client.fetch("/api/channels/1/messages"))["messages"]
    assert [m["id"] for m in history] == [message["id"]]
    theirs = await bob.expect("message", channel=1)
    assert theirs["message"] == message
    assert "clientId" not in theirs


@pytest.mark.gen_test(timeout=20)
async def test_same_user_other_tab_gets_message_without_client_id(peer):
    tab1 = await peer("alice")
    tab2 = await peer("alice", user=tab1.user, cookie=tab1.cookie)
    await tab1.join()
    await tab2.join()
    await tab1.send({"type": "send", "channel": 1, "text": "hi", "clientId": "x"})
    await tab1.expect("message", clientId="x")
    frame = await tab2.expect("message")
    assert "clientId" not in frame


@pytest.mark.gen_test(timeout=20)
async def test_messages_only_reach_joined_sockets(peer):
    alice = await peer("alice")
    bob = await peer("bob")
    await alice.join()
    await alice.send({"type": "send", "channel": 1, "text": "anyone?"})
    await alice.expect("message")
    await bob.roundtrip()  # bob never joined: nothing but the pong
    await bob.join()
    await bob.expect("presence", status="online")
    await alice.expect("presence", status="online")
    await bob.send({"type": "leave", "channel": 1})
    await bob.expect("left", channel=1)
    await alice.expect("presence", status="offline")
    await alice.send({"type": "send", "channel": 1, "text": "gone?"})
    await alice.expect("message")
    await bob.roundtrip()


@pytest.mark.gen_test(timeout=20)
async def test_token_bucket_flood_stores_nothing_extra(ctx, peer, clock):
    alice = await peer("alice")
    await alice.join()
    for i in range(5):
        await alice.send({"type": "send", "channel": 1, "text": f"m{i}", "clientId": f"c{i}"})
        await alice.expect("message", clientId=f"c{i}")
    await alice.send({"type": "send", "channel": 1, "text": "m5", "clientId": "c5"})
    await alice.expect("error", code="rate_limited", ref="c5")
    assert [m.text for m in await ctx.db.list_messages(1)] == [f"m{i}" for i in range(5)]
    clock.advance(1.0)  # one token back (5 per 5 s)
    await alice.send({"type": "send", "channel": 1, "text": "m6", "clientId": "c6"})
    await alice.expect("message", clientId="c6")
    await alice.send({"type": "send", "channel": 1, "text": "m7", "clientId": "c7"})
    await alice.expect("error", code="rate_limited")
    assert len(await ctx.db.list_messages(1)) == 6


@pytest.mark.gen_test(timeout=20)
async def test_announcement_channel_students_read_only(ctx, peer):
    teacher = await peer("teach", "teacher")
    kid = await peer("kid")
    channel = await ctx.db.create_channel("news", "", "announcement", teacher.user.id)
    await teacher.join(channel.id)
    await kid.join(channel.id)
    await teacher.expect("presence", status="online")
    await kid.expect("presence", status="online")  # the teacher already there
    await kid.send({"type": "send", "channel": channel.id, "text": "hi", "clientId": "k"})
    await kid.expect("error", code="forbidden", ref="k")
    await teacher.send({"type": "send", "channel": channel.id, "text": "Exam on Friday"})
    await teacher.expect("message")
    await kid.expect("message")
    assert [m.text for m in await ctx.db.list_messages(channel.id)] == ["Exam on Friday"]


@pytest.mark.gen_test(timeout=20)
async def test_role_is_reread_at_every_message(ctx, peer):
    kid = await peer("kid")
    channel = await ctx.db.create_channel("news", "", "announcement", None)
    await kid.join(channel.id)
    await kid.send({"type": "send", "channel": channel.id, "text": "one"})
    await kid.expect("error", code="forbidden")
    await ctx.db.update_user(kid.user.id, role="teacher")
    await kid.send({"type": "send", "channel": channel.id, "text": "two"})
    frame = await kid.expect("message")
    assert frame["message"]["author"]["role"] == "teacher"
    await ctx.db.update_user(kid.user.id, role="student")
    await kid.send({"type": "send", "channel": channel.id, "text": "three"})
    await kid.expect("error", code="forbidden")


@pytest.mark.gen_test(timeout=20)
async def test_disabled_in_database_closes_at_next_message(ctx, peer):
    kid = await peer("kid")
    await kid.join()
    # Straight in the database (no session end): the next message finds it and closes.
    await ctx.db.update_user(kid.user.id, disabled=True)
    await kid.send({"type": "send", "channel": 1, "text": "still here?"})
    assert await kid.closed() == 4001
    assert await ctx.db.list_messages(1) == []
    assert await ctx.store.list_for_user(kid.user.id) == []


@pytest.mark.gen_test(timeout=20)
async def test_chat_message_counts_as_activity(ctx, clock, peer):
    kid = await peer("kid")
    await kid.join()
    idle = ctx.settings.session_idle_timeout
    clock.advance(idle - 10)
    await kid.send({"type": "send", "channel": 1, "text": "still here"})
    await kid.expect("message")
    clock.advance(20)  # past the original idle deadline, not the renewed one
    assert await ctx.store.prune_expired() == 0
    await kid.roundtrip()


# --------------------------------------------------------------- presence, typing


@pytest.mark.gen_test(timeout=20)
async def test_presence_and_typing(peer, clock):
    alice = await peer("alice")
    await alice.join()
    bob = await peer("bob")
    await bob.join()
    online = await alice.expect("presence", channel=1, status="online")
    assert online["user"] == {
        "id": bob.user.id,
        "username": "bob",
        "displayName": "Bob",
        "role": "student",
    }
    # bob learns who was already there
    already = await bob.expect("presence", channel=1, status="online")
    assert already["user"]["id"] == alice.user.id
    # typing reaches others, not the typist; more than one a second is dropped silently
    await bob.send({"type": "typing", "channel": 1})
    await bob.send({"type": "typing", "channel": 1})
    await bob.roundtrip()
    typing = await alice.expect("typing", channel=1)
    assert typing["user"]["id"] == bob.user.id
    await alice.roundtrip()  # the second typing frame never arrived
    clock.advance(1.0)
    await bob.send({"type": "typing", "channel": 1})
    await alice.expect("typing", channel=1)
    # a second socket of bob's does not repeat "online"; closing one of two is not "offline"
    bob2 = await peer("bob", user=bob.user, cookie=bob.cookie)
    await bob2.join()
    await bob2.expect("presence", status="online")  # alice
    await alice.roundtrip()
    bob2.close()
    await bob2.closed()
    await alice.roundtrip()
    bob.close()
    offline = await alice.expect("presence", channel=1, status="offline")
    assert offline["user"]["id"] == bob.user.id


# ----------------------------------------------------------------- session end


async def _joined(peer, name: str = "kid") -> Peer:
    p = await peer(name)
    await p.join()
    return p


@pytest.mark.gen_test(timeout=20)
async def test_logout_closes_4001(peer, make_client, ctx):
    kid = await _joined(peer)
    client = make_client()
    client.cookies.update(dict([kid.cookie.split("=", 1)]))
    r = await client.fetch("/api/auth/logout", "POST")
    assert r.code == 200
    assert await kid.closed() == 4001


@pytest.mark.gen_test(timeout=20)
async def test_revocation_closes_only_that_session(peer, make_client, ctx):
    kid = await _joined(peer)
    other = await peer("kid", user=kid.user, cookie=await _cookie(ctx, kid.user.id))
    client = make_client()
    client.cookies.update(dict([other.cookie.split("=", 1)]))
    sessions = body(await client.fetch("/api/sessions"))["sessions"]
    target = next(s for s in sessions if not s["current"])
    r = await client.fetch(f"/api/sessions/{target['id']}", "DELETE")
    assert r.code == 204
    assert await kid.closed() == 4001
    await other.roundtrip()


async def _cookie(ctx, user_id: int) -> str:
    token, _ = await ctx.store.create(user_id, ip="127.0.0.1", user_agent="test")
    return f"{ctx.settings.cookie_name}={ctx.signer.sign(token)}"


@pytest.mark.gen_test(timeout=20)
async def test_password_change_closes_other_sessions_4001(peer, make_client, ctx):
    kid = await _joined(peer)
    client = make_client()
    client.cookies.update(dict([kid.cookie.split("=", 1)]))
    r = await client.fetch(
        "/api/users/me/password",
        "POST",
        json_body={"currentPassword": PASSWORD, "newPassword": "a different long passphrase"},
    )
    assert r.code == 200, r.body
    assert await kid.closed() == 4001


@pytest.mark.gen_test(timeout=20)
async def test_admin_disable_closes_4001(peer, make_client, make_user, ctx):
    kid = await _joined(peer)
    admin = await make_user("boss", "admin")
    client = make_client()
    client.cookies.update(dict([(await _cookie(ctx, admin.id)).split("=", 1)]))
    r = await client.fetch(f"/api/admin/users/{kid.user.id}", "PATCH", json_body={"disabled": True})
    assert r.code == 200, r.body
    assert await kid.closed() == 4001


@pytest.mark.gen_test(timeout=20)
async def test_expiry_found_by_pruner_closes_4001(peer, ctx, clock):
    kid = await _joined(peer)
    clock.advance(ctx.settings.session_idle_timeout + 1)
    assert await ctx.store.prune_expired() == 1
    assert await kid.closed() == 4001


@pytest.mark.gen_test(timeout=20)
async def test_expiry_found_by_a_frame_closes_4001(peer, ctx, clock):
    kid = await _joined(peer)
    clock.advance(ctx.settings.session_max_age + 1)
    await kid.send({"type": "ping"})
    assert await kid.closed() == 4001


# ------------------------------------------------------------- channel deletion


@pytest.mark.gen_test(timeout=20)
async def test_channel_deletion_reaches_subscribers(peer, ctx, make_client, make_user):
    teacher = await peer("teach", "teacher")
    kid = await peer("kid")
    channel = await ctx.db.create_channel("temp", "", "discussion", teacher.user.id)
    await kid.join(channel.id)
    await kid.join(1)
    client = make_client()
    client.cookies.update(dict([teacher.cookie.split("=", 1)]))
    r = await client.fetch(f"/api/channels/{channel.id}", "DELETE")
    assert r.code == 204
    await kid.expect("channel_deleted", channel=channel.id)
    await kid.expect("channel_removed", channel=channel.id)
    await kid.send({"type": "send", "channel": channel.id, "text": "hello?"})
    await kid.expect("error", code="not_found")
    await kid.send({"type": "join", "channel": channel.id})
    await kid.expect("error", code="not_found")
    assert ctx.hub.members(channel.id) == 0
    # the other channel is untouched
    await kid.send({"type": "send", "channel": 1, "text": "fine"})
    await kid.expect("message", channel=1)


# ------------------------------------------------------- heartbeat, slow peers, shutdown


@pytest.mark.gen_test(timeout=20)
async def test_heartbeat_settings(app):
    # The contract's numbers; the silence limit is enforced by plp's own watchdog.
    assert app.settings["websocket_ping_interval"] == 25
    assert app.settings["websocket_ping_timeout"] == 60
    assert app.settings["websocket_max_message_size"] == 16 * 1024


@pytest.mark.gen_test(timeout=20)
async def test_server_pings_and_drops_a_silent_peer(app, http_server, base_url, make_user, ctx):
    app.settings.update(websocket_ping_interval=0.1, websocket_ping_timeout=0.5)
    user = await make_user("quiet")
    raw, _ = await RawSocket.open(base_url, await _cookie(ctx, user.id), hello=False)
    opcodes = []
    while True:
        opcode, payload = await raw.frame()
        opcodes.append(opcode)
        if opcode == 0x8:
            break
    raw.close()
    assert opcodes[0] == 0x1  # hello
    assert 0x9 in opcodes  # pings, never answered
    assert int.from_bytes(payload[:2], "big") == 1000
    assert ctx.hub.count() == 0


@pytest.mark.gen_test(timeout=30)
async def test_slow_reader_is_dropped_without_holding_up_others(
    http_server, base_url, ctx, peer, make_user
):
    fast = await peer("fast")
    await fast.join()
    user = await make_user("slow")
    raw, _ = await RawSocket.open(base_url, await _cookie(ctx, user.id), hello=False)
    await raw.frame()  # hello
    sub = next(s for s in ctx.hub._all if s.user_id == user.id)
    ctx.hub.join(sub, 1)  # subscribed; this client will never read again
    await fast.expect("presence", status="online")
    big = "x" * 60_000
    sent = 0
    while ctx.hub.connected(sub) and sent < 2000:
        ctx.hub.publish(1, {"type": "bulk", "n": sent, "pad": big})
        # The fast reader gets each frame, in order, while the slow one's backlog grows.
        frame = await fast.recv()
        assert frame is not None and frame["type"] == "bulk" and frame["n"] == sent
        sent += 1
    assert not ctx.hub.connected(sub), "a reader that never reads was not dropped"
    assert fast.conn.protocol is not None and ctx.hub.members(1) == 1
    raw.close()


@pytest.mark.gen_test(timeout=20)
async def test_shutdown_closes_1001_after_in_flight_sends(ctx, peer):
    alice = await peer("alice")
    bob = await peer("bob")
    await alice.join()
    ctx.hub.begin()  # a send still being committed
    shutdown = asyncio.ensure_future(ctx.hooks.shutdown())
    await wait_until(lambda: ctx.hub.closing, what="the shutdown to begin")
    # A window in which a shutdown that did not wait would finish: what must NOT happen has
    # no event to await.
    await asyncio.sleep(0.05)
    assert not shutdown.done(), shutdown  # waits for the in-flight send
    assert ctx.hub.count() == 2  # sockets still open meanwhile
    ctx.hub.end()
    await asyncio.wait_for(shutdown, WAIT)
    assert await alice.closed() == 1001
    assert await bob.closed() == 1001


# ----------------------------------------------------------------- the hub itself


def _sub(hub, user_id: int, send, closed: list, key: str = "k") -> Any:
    from plp.chat.hub import Subscriber

    return Subscriber(
        conn_id=hub.new_conn_id(),
        session_key=f"{key}{user_id}",
        user_id=user_id,
        user={"id": user_id, "username": f"u{user_id}", "displayName": "U", "role": "student"},
        address="10.0.0.1",
        send=send,
        close=lambda code, reason: closed.append((user_id, code)),
    )


def test_hub_serializes_once_and_drops_failing_subscribers():
    from plp.chat.hub import ChatHub

    encoded: list[str] = []
    hub = ChatHub(wire=lambda frame: encoded.append(frame) or frame.encode())
    received: dict[int, list] = {1: [], 2: [], 3: [], 4: []}
    closed: list = []

    def boom(payload):
        raise OSError("gone")

    subs = [
        _sub(hub, 1, received[1].append, closed),
        _sub(hub, 2, received[2].append, closed),
        _sub(hub, 3, lambda p: False, closed),  # over its pending bound
        _sub(hub, 4, boom, closed),
    ]
    for sub in subs:
        hub.add(sub)
        hub.join(sub, 7)
    encoded.clear()
    received[1].clear()
    received[2].clear()
    sent = hub.deliver(7, '{"type":"x"}')
    assert sent == 2
    assert encoded == ['{"type":"x"}']  # encoded once for everyone
    assert received[1][0] is received[2][0]  # the very same object to each subscriber
    assert sorted(closed) == [(3, 1008), (4, 1008)]
    assert hub.members(7) == 2 and hub.count() == 2
    # The sender can be skipped.
    received[1].clear()
    received[2].clear()
    hub.publish(7, {"type": "y"}, exclude=subs[0].conn_id)
    assert received[1] == [] and len(received[2]) == 1


def test_hub_goes_through_its_broker():
    from plp.chat.hub import Broker, ChatHub

    class Recording(Broker):
        def __init__(self) -> None:
            self.calls: list = []

        def publish(self, channel_id, frame, exclude):
            self.calls.append(("publish", channel_id, json.loads(frame)["type"]))
            self.hub.deliver(channel_id, frame, exclude)

        def channel_deleted(self, channel_id, frame):
            self.calls.append(("deleted", channel_id))
            self.hub.drop_channel(channel_id, frame)

        def end_session(self, key):
            self.calls.append(("end", key))
            self.hub.close_session(key)

    broker = Recording()
    hub = ChatHub(broker)
    closed: list = []
    got: list = []
    one = _sub(hub, 1, got.append, closed)
    hub.add(one)
    hub.join(one, 3)
    hub.channel_deleted(3)
    hub.session_ended(one.session_key, 1, "logout")
    assert broker.calls == [
        ("publish", 3, "presence"),
        ("deleted", 3),
        ("end", one.session_key),
    ]
    assert [json.loads(frame) for frame in got[-2:]] == [
        {"type": "channel_deleted", "channel": 3},
        {"type": "channel_removed", "channel": 3},
    ]
    assert closed == [(1, 4001)]
    assert hub.count() == 0 and hub.sockets_of_user(1) == 0


def test_token_bucket_and_refusal_window():
    from plp.chat.limits import RefusalWindow, TokenBucket

    bucket = TokenBucket(5, 5.0, now=100.0)
    assert [bucket.take(100.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(100.5) is False
    assert bucket.take(101.0) is True
    assert bucket.take(50.0) is False  # a clock stepping back gives nothing
    window = RefusalWindow(20, 10.0)
    assert not any(window.add(0.0) for _ in range(20))
    assert window.add(9.9) is True
    spread = RefusalWindow(20, 10.0)
    assert not any(spread.add(float(t)) for t in range(100))


@pytest.mark.gen_test(timeout=60)
async def test_sigterm_closes_sockets_1001_and_keeps_acknowledged_messages(
    http_client, live_server
):
    import signal

    from tests.support import Client

    server = live_server()
    client = Client(http_client, server.url)
    r = await client.register("amy")
    assert r.code == 201, r.body
    cookie = f"plp_session={client.cookies['plp_session']}"
    conn = await websocket_connect(
        HTTPRequest(server.ws_url + "/ws/chat", headers={"Cookie": cookie})
    )
    p = Peer(conn, None, cookie)
    await p.expect("hello")
    await p.join()
    await p.send({"type": "send", "channel": 1, "text": "before shutdown", "clientId": "s1"})
    acked = await p.expect("message", clientId="s1")
    server.proc.send_signal(signal.SIGTERM)
    assert await p.closed() == 1001
    conn.close()
    await wait_until(lambda: server.proc.poll() is not None, what="the server to exit")
    assert server.proc.returncode == 0, server.log_text()
    # The acknowledged message is in the database the server left behind.
    from plp.storage.sqlite import SQLiteDatabase

    db = SQLiteDatabase(str(server.data_dir / "plp.sqlite3"))
    stored = await db.list_messages(1)
    await db.close()
    assert [m.id for m in stored] == [acked["message"]["id"]]


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize(
    "headers, status",
    [
        ({"Connection": "Upgrade"}, 400),  # no Upgrade header
        ({"Upgrade": "h2c", "Connection": "Upgrade"}, 400),
        ({"Upgrade": "websocket", "Connection": "keep-alive"}, 400),
        ({"Upgrade": "websocket", "Connection": "keep-alive, Upgrade"}, 426),  # no version 13
        ({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "8"}, 426),
    ],
)
async def test_a_signed_in_get_that_is_no_websocket_upgrade_is_refused(
    http_client, base_url, make_user, session_cookie, ctx, headers, status
):
    # plp runs Tornado's upgrade checks itself (chat.py `_upgrade`): the same answers, and
    # the socket slot taken for the attempt is given back.
    user = await make_user("alice")
    cookie = await session_cookie(user.id)
    response = await http_client.fetch(
        HTTPRequest(base_url + "/ws/chat", headers={"Cookie": cookie, **headers}),
        raise_error=False,
    )
    assert response.code == status, response.body
    if status == 426:
        assert response.headers["Sec-WebSocket-Version"] == "13"
    assert "Sec-WebSocket-Accept" not in response.headers
    assert ctx.hub.count() == 0
    await wait_until(lambda: not ctx.hub.sockets.held, what="the socket slot to be given back")
