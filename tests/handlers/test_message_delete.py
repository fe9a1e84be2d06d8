"""DELETE /api/channels/{id}/messages/{messageId} against the served app (SPEC §6, §8, §11).

Real HTTP and WebSocket clients: who may delete, what the sockets hear, what the audit log
keeps (never the text), and every refusal leaving the message in place.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from tests.support import body, wait_until

WAIT = 10.0  # only bounds a hang, never asserts speed
SECRET_TEXT = "delete-me-7f3a secret words"


class Socket:
    """A real chat socket whose hello has been read."""

    def __init__(self, conn: WebSocketClientConnection) -> None:
        self.conn = conn

    async def recv(self) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.read_message(), WAIT)
        assert raw is not None, f"socket closed ({self.conn.close_code})"
        return json.loads(raw)

    async def next_of(self, type_: str) -> dict[str, Any]:
        """The next frame of this type, skipping presence and the like."""
        while True:
            frame = await self.recv()
            if frame["type"] == type_:
                return frame
            assert frame["type"] in ("presence", "typing", "message"), frame

    async def join(self, channel: int) -> None:
        await self.conn.write_message(json.dumps({"type": "join", "channel": channel}))
        assert (await self.next_of("joined"))["channel"] == channel

    async def frames_until_pong(self) -> list[dict[str, Any]]:
        """Every frame the server queued before answering a ping (the pong excluded)."""
        await self.conn.write_message(json.dumps({"type": "ping"}))
        seen = []
        while (frame := await self.recv())["type"] != "pong":
            seen.append(frame)
        return seen


@pytest.fixture
def user_client(make_user, session_cookie, make_client):
    """(user, cookie-keeping client signed in as them) for a new user of a role."""

    async def make(username: str, role: str = "student"):
        user = await make_user(username, role)
        cookie = await session_cookie(user.id)
        client = make_client()
        name, value = cookie.split("=", 1)
        client.cookies[name] = value
        client.user = user
        client.cookie = cookie
        return client

    return make


@pytest.fixture
def socket_of(http_server, base_url):
    """Open a chat socket for a signed-in client; closed at the end of the test."""
    opened: list[WebSocketClientConnection] = []

    async def open_(client) -> Socket:
        url = "ws" + base_url[len("http") :] + "/ws/chat"
        conn = await websocket_connect(HTTPRequest(url, headers={"Cookie": client.cookie}))
        opened.append(conn)
        sock = Socket(conn)
        assert (await sock.recv())["type"] == "hello"
        return sock

    yield open_
    for conn in opened:
        conn.close()


async def history_ids(client, channel: int) -> list[int]:
    r = await client.fetch(f"/api/channels/{channel}/messages")
    assert r.code == 200, r.body
    return [m["id"] for m in body(r)["messages"]]


async def removals(ctx) -> list:
    return [e for e in await ctx.db.list_audit(500) if e.event == "message_removed"]


def delete_path(channel: int, message: Any) -> str:
    return f"/api/channels/{channel}/messages/{message}"


@pytest.mark.gen_test(timeout=30)
async def test_author_deletes_own_message_and_joined_sockets_hear(ctx, user_client, socket_of):
    alice = await user_client("alice")
    bob = await user_client("bob")
    carol = await user_client("carol")
    other = await ctx.db.create_channel("other", "", "discussion", None)
    alice_sock = await socket_of(alice)
    bob_sock = await socket_of(bob)
    carol_sock = await socket_of(carol)  # joined elsewhere only: must hear nothing
    await alice_sock.join(1)
    await bob_sock.join(1)
    await carol_sock.join(other.id)
    keep = await ctx.db.add_message(1, bob.user, "stays")
    doomed = await ctx.db.add_message(1, alice.user, SECRET_TEXT)
    assert await history_ids(bob, 1) == [keep.id, doomed.id]

    r = await alice.fetch(delete_path(1, doomed.id), "DELETE")
    assert r.code == 204, r.body
    assert r.body == b""
    expected = {"type": "message_deleted", "channel": 1, "message": doomed.id}
    assert await alice_sock.next_of("message_deleted") == expected
    assert await bob_sock.next_of("message_deleted") == expected
    assert await carol_sock.frames_until_pong() == []
    assert await history_ids(bob, 1) == [keep.id]
    assert await ctx.db.get_message(doomed.id) is None
    # One's own message is not a moderation: nothing audited.
    assert await removals(ctx) == []
    # Gone means gone: a second delete is 404, and no second frame is sent.
    r = await alice.fetch(delete_path(1, doomed.id), "DELETE")
    assert r.code == 404 and body(r)["error"] == "not_found"
    assert await bob_sock.frames_until_pong() == []


@pytest.mark.gen_test(timeout=30)
async def test_admin_removes_anothers_message_audited_without_text(ctx, user_client, socket_of):
    kid = await user_client("kid")
    boss = await user_client("boss", "admin")
    kid_sock = await socket_of(kid)
    await kid_sock.join(1)
    doomed = await ctx.db.add_message(1, kid.user, SECRET_TEXT)

    r = await boss.fetch(delete_path(1, doomed.id), "DELETE")
    assert r.code == 204, r.body
    frame = await kid_sock.next_of("message_deleted")
    assert frame == {"type": "message_deleted", "channel": 1, "message": doomed.id}
    assert await history_ids(kid, 1) == []

    rows = await wait_until(lambda: removals(ctx), what="a message_removed audit row")
    assert len(rows) == 1
    row = rows[0].to_json()
    assert row["userId"] == kid.user.id and row["username"] == "kid"
    assert row["detail"] == {
        "by": boss.user.id,
        "byUsername": "boss",
        "channel": 1,
        "message": doomed.id,
    }
    assert row["ip"]
    everything = json.dumps([e.to_json() for e in await ctx.db.list_audit(500)])
    assert "delete-me-7f3a" not in everything


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("role", ["student", "teacher"])
async def test_non_moderator_cannot_delete_anothers_message(ctx, user_client, socket_of, role):
    """A student, or (until classes give teachers their class) a teacher: 403, kept."""
    author = await user_client("author")
    other = await user_client("other", role)
    author_sock = await socket_of(author)
    await author_sock.join(1)
    message = await ctx.db.add_message(1, author.user, "mine")

    r = await other.fetch(delete_path(1, message.id), "DELETE")
    assert r.code == 403, r.body
    assert body(r)["error"] == "forbidden"
    assert await history_ids(author, 1) == [message.id]
    assert await author_sock.frames_until_pong() == []
    assert await removals(ctx) == []


@pytest.mark.gen_test(timeout=30)
async def test_unknown_and_foreign_ids_are_404(ctx, user_client):
    boss = await user_client("boss", "admin")
    other = await ctx.db.create_channel("other", "", "discussion", None)
    here = await ctx.db.add_message(1, boss.user, "in general")
    there = await ctx.db.add_message(other.id, boss.user, "in other")
    bad_paths = [
        delete_path(999_999, here.id),  # no such channel
        delete_path(1, there.id + 1000),  # no such message
        delete_path(1, there.id),  # a message of another channel
        delete_path(other.id, here.id),
        delete_path(1, "abc"),
        delete_path(1, "-1"),
        delete_path(1, "1.0"),
        delete_path(1, "%D9%A1"),  # Arabic-Indic one: a digit to str.isdigit, not to us
        delete_path(1, "9" * 40),
        delete_path("x", here.id),
        delete_path("9" * 40, here.id),
    ]
    for path in bad_paths:
        r = await boss.fetch(path, "DELETE")
        assert r.code == 404, (path, r.code, r.body)
        assert body(r)["error"] == "not_found", path
    assert await history_ids(boss, 1) == [here.id]
    assert await history_ids(boss, other.id) == [there.id]


@pytest.mark.gen_test(timeout=30)
async def test_refused_without_xsrf_or_sign_in(ctx, client, user_client):
    alice = await user_client("alice")
    message = await ctx.db.add_message(1, alice.user, "still here")

    r = await alice.fetch(delete_path(1, message.id), "DELETE", xsrf=False)
    assert r.code == 403 and body(r)["error"] == "xsrf"
    r = await client.fetch(delete_path(1, message.id), "DELETE")
    assert r.code == 401 and body(r)["error"] == "not_authenticated"
    r = await client.fetch(delete_path(1, "abc"), "DELETE")
    assert r.code == 401
    assert await history_ids(alice, 1) == [message.id]


@pytest.mark.gen_test(timeout=30)
async def test_concurrent_deletes_one_wins_one_frame(ctx, user_client, socket_of):
    """The author and an admin delete at once: one 204, one 404, one frame, one audit at most."""
    alice = await user_client("alice")
    boss = await user_client("boss", "admin")
    sock = await socket_of(alice)
    await sock.join(1)
    message = await ctx.db.add_message(1, alice.user, "contested")
    path = delete_path(1, message.id)
    answers = await asyncio.gather(alice.fetch(path, "DELETE"), boss.fetch(path, "DELETE"))
    assert sorted(r.code for r in answers) == [204, 404]
    frames = await sock.frames_until_pong()
    assert [f["type"] for f in frames] == ["message_deleted"]
    assert len(await removals(ctx)) <= 1
    assert await history_ids(alice, 1) == []
