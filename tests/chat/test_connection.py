"""`ChatConnection` driven without Tornado or a socket (issue 11: the protocol split).

Each connection here is a `ChatConnection` over the real SQLite database, the real memory
session store, the settings and clock of the test Context and a real `ChatHub` (without the
wire encoder, so frames arrive as JSON text); its socket is a `Peer` that keeps what `send`
and `close` were given. Frames go in as the text a client would send. The rules the WebSocket
tests check end to end must hold with no handler in the way: a message is stored, published
to the others and echoed with its clientId; malformed frames, binary frames, students in
announcement channels, senders over the rate, ended sessions and disabled accounts are
refused as SPEC §8 says, and nothing is stored for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from plp.chat.connection import ChatConnection
from plp.chat.hub import ChatHub


class Peer:
    """A socket as a connection sees it: `send(frame)` and `close(code, reason)`."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    def send(self, frame: str) -> bool:
        self.frames.append(json.loads(frame))
        return True

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [frame for frame in self.frames if frame["type"] == kind]


class Recorder:
    """The hooks a connection calls: keeps every committed message."""

    def __init__(self) -> None:
        self.stored: list[Any] = []

    def message_stored(self, message: Any) -> None:
        self.stored.append(message)


@dataclass
class ChatPieces:
    """A `ChatContext`: just the pieces of a Context a chat connection uses."""

    settings: Any
    clock: Any
    hub: ChatHub
    db: Any
    store: Any
    hooks: Recorder = field(default_factory=Recorder)


@pytest.fixture
def hub() -> ChatHub:
    return ChatHub()  # no wire encoder: peers get the JSON text


@pytest.fixture
def pieces(ctx, hub) -> ChatPieces:
    return ChatPieces(ctx.settings, ctx.clock, hub, ctx.db, ctx.store)


@pytest.fixture
def stored(pieces) -> list:
    return pieces.hooks.stored


@pytest.fixture
def connect(ctx, hub, pieces, make_user):
    """Sign a new user in and open a connection for them; (connection, peer, user)."""

    async def open_for(username: str, role: str = "student"):
        user = await make_user(username, role)
        _token, session = await ctx.store.create(user.id, ip="10.0.0.9", user_agent="test")
        peer = Peer()
        conn = ChatConnection(
            pieces,
            conn_id=hub.new_conn_id(),
            user=user,
            session=session,
            address="10.0.0.9",
            send=peer.send,
            close=peer.close,
        )
        assert await conn.connect(user)
        assert peer.frames == [{"type": "hello", "user": user.to_json()}]
        peer.frames.clear()
        return conn, peer, user

    return open_for


async def frame(conn: ChatConnection, **data: Any) -> None:
    await conn.handle_incoming_message(json.dumps(data))


@pytest.mark.gen_test
async def test_send_is_stored_then_published_and_echoed(ctx, connect, stored):
    alice, alice_peer, alice_user = await connect("alice", "teacher")
    bob, bob_peer, _ = await connect("bob")
    channel = await ctx.db.create_channel("class-7b", "", "discussion", alice_user.id)
    for conn in (alice, bob):
        await frame(conn, type="join", channel=channel.id)
    assert alice_peer.of_type("joined") == [{"type": "joined", "channel": channel.id}]

    await frame(alice, type="send", channel=channel.id, text="  hello  ", clientId="c-1")

    messages = await ctx.db.list_messages(channel.id)
    assert [m.text for m in messages] == ["hello"]
    assert [m.id for m in stored] == [messages[0].id]  # the hook saw the committed message
    echo = alice_peer.of_type("message")
    assert echo == [
        {
            "type": "message",
            "channel": channel.id,
            "message": messages[0].to_json(),
            "clientId": "c-1",
        }
    ]
    assert bob_peer.of_type("message") == [
        {"type": "message", "channel": channel.id, "message": messages[0].to_json()}
    ]


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "raw, ref",
    [
        ('{"type": "send", "channel": 1, "text": {"a": 1}}', None),
        ("[1, 2]", None),
        ("[" * 5000 + "]" * 5000, None),
        ('{"type": "send", "channel": 1, "text": "\\ud800", "clientId": "c"}', "c"),
        ('{"type": "dance"}', "dance"),
        ('{"type": "send", "channel": true, "text": "x"}', "send"),
        ("not json", None),
    ],
    ids=["nested", "array", "deep", "lone-surrogate", "unknown-type", "bool-channel", "not-json"],
)
async def test_malformed_frames_get_bad_request_and_store_nothing(ctx, connect, raw, ref):
    conn, peer, user = await connect("carol", "teacher")
    channel = await ctx.db.create_channel("class-7b", "", "discussion", user.id)
    await frame(conn, type="join", channel=channel.id)
    peer.frames.clear()

    await conn.handle_incoming_message(raw)

    [error] = peer.frames
    assert error["type"] == "error" and error["code"] == "bad_request"
    assert error.get("ref") == ref
    assert peer.closed is None
    assert await ctx.db.list_messages(channel.id) == []


@pytest.mark.gen_test
async def test_binary_frame_closes_1003(connect, hub):
    conn, peer, _ = await connect("dave")
    await conn.handle_incoming_message(b'{"type": "ping"}')
    assert peer.closed == (1003, "binary frames are not accepted")
    assert peer.frames == []
    assert hub.count() == 0


@pytest.mark.gen_test
async def test_students_neither_post_nor_type_in_announcements(ctx, connect, stored):
    teacher, teacher_peer, teacher_user = await connect("tina", "teacher")
    student, student_peer, _ = await connect("sam")
    channel = await ctx.db.create_channel("news", "", "announcement", teacher_user.id)
    for conn in (teacher, student):
        await frame(conn, type="join", channel=channel.id)
    teacher_peer.frames.clear()

    await frame(student, type="send", channel=channel.id, text="hi", clientId="s-1")
    await frame(student, type="typing", channel=channel.id)

    assert student_peer.of_type("error") == [
        {
            "type": "error",
            "code": "forbidden",
            "message": "Only teachers and admins post here.",
            "ref": "s-1",
        }
    ]
    assert teacher_peer.frames == []  # neither the message nor the typing reached anyone
    assert stored == [] and await ctx.db.list_messages(channel.id) == []


@pytest.mark.gen_test
async def test_sends_over_the_rate_are_refused_until_time_passes(ctx, connect, clock):
    conn, peer, user = await connect("eve", "teacher")
    channel = await ctx.db.create_channel("class-7b", "", "discussion", user.id)
    await frame(conn, type="join", channel=channel.id)
    rate, period = ctx.settings.chat_rate
    for i in range(rate + 1):
        await frame(conn, type="send", channel=channel.id, text=f"m{i}", clientId=f"c{i}")
    [refused] = peer.of_type("error")
    assert refused["code"] == "rate_limited" and refused["ref"] == f"c{rate}"
    assert len(await ctx.db.list_messages(channel.id)) == rate

    clock.advance(period / rate)  # one token back
    await frame(conn, type="send", channel=channel.id, text="again")
    assert len(await ctx.db.list_messages(channel.id)) == rate + 1


@pytest.mark.gen_test
async def test_too_many_refused_frames_close_1008(connect):
    conn, peer, _ = await connect("frank")
    for _ in range(20):
        await conn.handle_incoming_message("{")
    assert peer.closed is None
    await conn.handle_incoming_message("{")
    assert peer.closed == (1008, "too many refused frames")
    assert len(peer.of_type("error")) == 21


@pytest.mark.gen_test
async def test_a_frame_after_the_session_ended_closes_4001(ctx, connect):
    conn, peer, _ = await connect("gina")
    await ctx.store.end(conn.sub.session_key, "logout")
    await frame(conn, type="ping")
    assert peer.closed == (4001, "session ended")
    assert peer.frames == []


@pytest.mark.gen_test
async def test_a_disabled_sender_is_closed_4001_and_signed_out(ctx, connect, stored):
    conn, peer, user = await connect("hank", "teacher")
    channel = await ctx.db.create_channel("class-7b", "", "discussion", user.id)
    await frame(conn, type="join", channel=channel.id)
    await ctx.db.update_user(user.id, disabled=True)

    await frame(conn, type="send", channel=channel.id, text="still here?")

    assert peer.closed == (4001, "session ended")
    assert await ctx.store.get_by_key(conn.sub.session_key) is None
    assert stored == [] and await ctx.db.list_messages(channel.id) == []
