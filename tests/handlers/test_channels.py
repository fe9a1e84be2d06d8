"""The channel API: list, create (teacher/admin), delete (admin or creator), history."""

from __future__ import annotations

import json

import pytest

from tests.support import body


def error_of(response) -> str:
    return body(response)["error"]


@pytest.mark.gen_test
async def test_list_needs_sign_in_and_has_general(client, signed_in):
    r = await client.fetch("/api/channels")
    assert r.code == 401 and error_of(r) == "not_authenticated"
    kid = await signed_in("kid")
    r = await kid.fetch("/api/channels")
    assert r.code == 200
    channels = body(r)["channels"]
    assert [c["name"] for c in channels] == ["general"]
    assert set(channels[0]) == {
        "id",
        "name",
        "description",
        "kind",
        "createdBy",
        "createdAt",
        "classId",
    }
    assert channels[0]["classId"] is None
    assert channels[0]["kind"] == "discussion"


@pytest.mark.gen_test
async def test_teacher_creates_and_name_is_unique(signed_in):
    teacher = await signed_in("teach", "teacher")
    # School-wide channels are the admins' (SPEC §12); a teacher makes them in a class.
    r = await teacher.fetch("/api/channels", "POST", json_body={"name": "maths-7b"})
    assert r.code == 403 and error_of(r) == "forbidden"
    r = await teacher.fetch("/api/classes", "POST", json_body={"name": "7B"})
    class_id = body(r)["class"]["id"]
    r = await teacher.fetch(
        "/api/channels",
        "POST",
        json_body={
            "name": " Maths-7B ",
            "description": "Year 7 maths",
            "kind": "announcement",
            "classId": class_id,
        },
    )
    assert r.code == 201, r.body
    channel = body(r)["channel"]
    assert channel["name"] == "maths-7b"
    assert channel["kind"] == "announcement"
    assert channel["createdBy"] == teacher.user.id and channel["classId"] == class_id
    r = await teacher.fetch(
        "/api/channels", "POST", json_body={"name": "MATHS-7b", "classId": class_id}
    )
    assert r.code == 409 and error_of(r) == "conflict"
    r = await teacher.fetch(
        "/api/channels", "POST", json_body={"name": "science", "classId": class_id}
    )
    assert r.code == 201 and body(r)["channel"]["kind"] == "discussion"
    names = [c["name"] for c in body(await teacher.fetch("/api/channels"))["channels"]]
    assert names == ["general", "maths-7b", "science"]


@pytest.mark.gen_test
async def test_student_and_anonymous_cannot_create(client, signed_in):
    kid = await signed_in("kid")
    r = await kid.fetch("/api/channels", "POST", json_body={"name": "mine"})
    assert r.code == 403 and error_of(r) == "forbidden"
    r = await client.fetch("/api/channels", "POST", json_body={"name": "mine"})
    assert r.code == 401 and error_of(r) == "not_authenticated"


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "payload, bad",
    [
        ({}, "name"),
        ({"name": 5}, "name"),
        ({"name": ""}, "name"),
        ({"name": "-dash-first"}, "name"),
        ({"name": "has space"}, "name"),
        ({"name": "ünï"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": "ok", "description": 7}, "description"),
        ({"name": "ok", "description": "d" * 257}, "description"),
        ({"name": "ok", "description": "two\nlines"}, "description"),
        ({"name": "ok", "kind": "secret"}, "kind"),
        ({"name": "ok", "kind": ["discussion"]}, "kind"),
    ],
)
async def test_create_rejects_bad_fields(signed_in, payload, bad):
    admin = await signed_in("boss", "admin")
    r = await admin.fetch("/api/channels", "POST", json_body=payload)
    assert r.code == 400, r.body
    assert error_of(r) == "bad_request"
    assert bad in body(r)["fields"]


@pytest.mark.gen_test
async def test_create_rejects_malformed_bodies(signed_in):
    admin = await signed_in("boss", "admin")
    for raw in ("{", "[]", "", '"name"'):
        r = await admin.fetch(
            "/api/channels", "POST", body=raw, headers={"Content-Type": "application/json"}
        )
        assert r.code == 400 and error_of(r) == "bad_request", raw
    r = await admin.fetch(
        "/api/channels", "POST", body=json.dumps({"name": "x" * 70_000}), xsrf=True
    )
    assert r.code == 413 and error_of(r) == "too_large"
    # The longest allowed name is fine.
    r = await admin.fetch("/api/channels", "POST", json_body={"name": "a" * 64})
    assert r.code == 201


@pytest.mark.gen_test
async def test_delete_rules(signed_in, ctx):
    maker = await signed_in("maker", "teacher")
    other = await signed_in("other", "teacher")
    kid = await signed_in("kid")
    admin = await signed_in("boss", "admin")
    # School-wide channels a teacher made before classes existed: still theirs to delete.
    first = (await ctx.db.create_channel("one", "", "discussion", maker.user.id)).to_json()
    second = (await ctx.db.create_channel("two", "", "discussion", maker.user.id)).to_json()
    for who in (other, kid):
        r = await who.fetch(f"/api/channels/{first['id']}", "DELETE")
        assert r.code == 403 and error_of(r) == "forbidden"
    r = await maker.fetch(f"/api/channels/{first['id']}", "DELETE")
    assert r.code == 204 and r.body == b""
    r = await maker.fetch(f"/api/channels/{first['id']}", "DELETE")
    assert r.code == 404 and error_of(r) == "not_found"
    r = await admin.fetch(f"/api/channels/{second['id']}", "DELETE")
    assert r.code == 204
    for raw in ("abc", "-1", "9" * 30):
        r = await admin.fetch(f"/api/channels/{raw}", "DELETE")
        assert r.code == 404 and error_of(r) == "not_found", raw
    names = [c["name"] for c in body(await kid.fetch("/api/channels"))["channels"]]
    assert names == ["general"]
    r = await kid.fetch(f"/api/channels/{first['id']}/messages")
    assert r.code == 404


@pytest.mark.gen_test
async def test_delete_needs_xsrf(signed_in):
    admin = await signed_in("boss", "admin")
    r = await admin.fetch("/api/channels/1", "DELETE", xsrf=False)
    assert r.code == 403 and error_of(r) == "xsrf"


@pytest.mark.gen_test
async def test_history_pagination(ctx, signed_in):
    kid = await signed_in("kid")
    ids = [(await ctx.db.add_message(1, kid.user, f"m{i}")).id for i in range(7)]
    r = await kid.fetch("/api/channels/1/messages")
    assert r.code == 200
    messages = body(r)["messages"]
    assert [m["text"] for m in messages] == [f"m{i}" for i in range(7)]
    assert messages[0]["author"] == {
        "id": kid.user.id,
        "username": "kid",
        "displayName": "Kid",
        "role": "student",
    }
    page = body(await kid.fetch("/api/channels/1/messages?limit=3"))["messages"]
    assert [m["id"] for m in page] == ids[4:]
    page = body(await kid.fetch(f"/api/channels/1/messages?limit=3&before={ids[4]}"))["messages"]
    assert [m["id"] for m in page] == ids[1:4]
    page = body(await kid.fetch(f"/api/channels/1/messages?limit=3&before={ids[1]}"))["messages"]
    assert [m["id"] for m in page] == ids[:1]
    page = body(await kid.fetch(f"/api/channels/1/messages?before={ids[0]}"))["messages"]
    assert page == []
    page = body(await kid.fetch("/api/channels/1/messages?limit=100"))["messages"]
    assert len(page) == 7


@pytest.mark.gen_test
async def test_history_default_limit_is_50(ctx, signed_in):
    kid = await signed_in("kid")
    for i in range(55):
        await ctx.db.add_message(1, kid.user, f"m{i}")
    page = body(await kid.fetch("/api/channels/1/messages"))["messages"]
    assert len(page) == 50 and page[-1]["text"] == "m54"


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "query, bad",
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=1.5", "limit"),
        ("limit=", "limit"),
        ("before=0", "before"),
        ("before=x", "before"),
        ("before=99999999999999999999999", "before"),
        ("before=%C2%B2", "before"),
    ],
)
async def test_history_rejects_bad_query(signed_in, query, bad):
    kid = await signed_in("kid")
    r = await kid.fetch(f"/api/channels/1/messages?{query}")
    assert r.code == 400, r.body
    assert error_of(r) == "bad_request"
    assert bad in body(r)["fields"]


@pytest.mark.gen_test
async def test_history_unknown_channel_and_anonymous(client, signed_in):
    kid = await signed_in("kid")
    r = await kid.fetch("/api/channels/999/messages")
    assert r.code == 404 and error_of(r) == "not_found"
    r = await kid.fetch("/api/channels/nope/messages")
    assert r.code == 404 and error_of(r) == "not_found"
    r = await client.fetch("/api/channels/1/messages")
    assert r.code == 401 and error_of(r) == "not_authenticated"


@pytest.mark.gen_test
async def test_chat_page_requires_sign_in(client, signed_in):
    r = await client.fetch("/chat")
    assert r.code == 302
    assert r.headers["Location"] == "/login?next=%2Fchat"
    kid = await signed_in("kid")
    r = await kid.fetch("/chat")
    assert r.code == 200
    page = r.body.decode()
    for needle in ('id="channels"', 'id="messages"', 'name="message"', "/static/chat/main.js"):
        assert needle in page
    assert "<script>" not in page
    assert r.headers["Cache-Control"] == "no-store"
