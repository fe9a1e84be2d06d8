"""The classes API (SPEC §12): every row of its table, who may use it, and every kind of bad
input, through real HTTP against the served app."""

from __future__ import annotations

import json

import pytest

from plp.classes.codes import ALPHABET, CODE_LENGTH
from tests.support import body


def error_of(response) -> str:
    return body(response)["error"]


async def _class(teacher, name: str = "5A") -> dict:
    r = await teacher.fetch("/api/classes", "POST", json_body={"name": name})
    assert r.code == 201, r.body
    return body(r)["class"]


async def _join(client, code: str):
    return await client.fetch("/api/classes/join", "POST", json_body={"code": code})


@pytest.mark.gen_test
async def test_create_shows_the_code_to_its_teacher_only(signed_in):
    teacher = await signed_in("tess", "teacher")
    made = await _class(teacher, "  Class 5A ")
    assert made["name"] == "Class 5A"
    assert made["myRole"] == "teacher" and made["memberCount"] == 1
    assert made["createdBy"] == teacher.user.id
    code = made["joinCode"]
    assert len(code) == CODE_LENGTH and set(code) <= set(ALPHABET)
    kid = await signed_in("kid")
    r = await _join(kid, code.lower())  # case does not matter
    assert r.code == 200, r.body
    seen = body(r)["class"]
    assert seen["myRole"] == "student" and seen["memberCount"] == 2
    assert "joinCode" not in seen
    r = await kid.fetch(f"/api/classes/{made['id']}")
    assert r.code == 200 and "joinCode" not in body(r)["class"]
    r = await teacher.fetch(f"/api/classes/{made['id']}")
    assert body(r)["class"]["joinCode"] == code
    # Joining again changes nothing.
    r = await _join(kid, code[:4] + "-" + code[4:])
    assert r.code == 200 and body(r)["class"]["memberCount"] == 2


@pytest.mark.gen_test
async def test_list_is_the_users_classes_and_all_for_admins(signed_in):
    tess = await signed_in("tess", "teacher")
    tom = await signed_in("tom", "teacher")
    admin = await signed_in("boss", "admin")
    a = await _class(tess, "5A")
    b = await _class(tom, "5B")
    r = await tess.fetch("/api/classes")
    assert [c["id"] for c in body(r)["classes"]] == [a["id"]]
    r = await admin.fetch("/api/classes")
    listed = body(r)["classes"]
    assert [c["id"] for c in listed] == [a["id"], b["id"]]
    assert all(c["myRole"] is None and c["joinCode"] for c in listed)
    kid = await signed_in("kid")
    assert body(await kid.fetch("/api/classes"))["classes"] == []


@pytest.mark.gen_test
async def test_students_cannot_create_and_anonymous_get_401(client, signed_in):
    kid = await signed_in("kid")
    r = await kid.fetch("/api/classes", "POST", json_body={"name": "mine"})
    assert r.code == 403 and error_of(r) == "forbidden"
    for method, path in (
        ("GET", "/api/classes"),
        ("POST", "/api/classes"),
        ("POST", "/api/classes/join"),
        ("GET", "/api/classes/1"),
        ("GET", "/api/classes/1/members"),
    ):
        r = await client.fetch(path, method, json_body={} if method == "POST" else None)
        assert r.code == 401 and error_of(r) == "not_authenticated", path


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"name": 5},
        {"name": None},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 65},
        {"name": "two\nlines"},
        {"name": ["5A"]},
        {"name": "tab\there"},
    ],
)
async def test_bad_names_are_400(signed_in, payload):
    teacher = await signed_in("tess", "teacher")
    r = await teacher.fetch("/api/classes", "POST", json_body=payload)
    assert r.code == 400 and error_of(r) == "bad_request", r.body
    assert "name" in body(r)["fields"]
    made = await _class(teacher)
    r = await teacher.fetch(f"/api/classes/{made['id']}", "PATCH", json_body=payload)
    assert r.code == 400 and "name" in body(r)["fields"]


@pytest.mark.gen_test
async def test_malformed_bodies_are_400(signed_in):
    teacher = await signed_in("tess", "teacher")
    made = await _class(teacher)
    for path, method in (
        ("/api/classes", "POST"),
        ("/api/classes/join", "POST"),
        (f"/api/classes/{made['id']}", "PATCH"),
        (f"/api/classes/{made['id']}/members", "POST"),
    ):
        for raw in ("{", "[]", '"x"', "null"):
            r = await teacher.fetch(
                path, method, body=raw, headers={"Content-Type": "application/json"}
            )
            assert r.code == 400 and error_of(r) == "bad_request", (path, raw)


@pytest.mark.gen_test
async def test_duplicate_names_are_409_case_insensitively(signed_in):
    teacher = await signed_in("tess", "teacher")
    await _class(teacher, "Maths 5A")
    r = await teacher.fetch("/api/classes", "POST", json_body={"name": "MATHS 5a"})
    assert r.code == 409 and error_of(r) == "conflict"
    other = await _class(teacher, "Art")
    r = await teacher.fetch(f"/api/classes/{other['id']}", "PATCH", json_body={"name": "maths 5A"})
    assert r.code == 409 and error_of(r) == "conflict"
    r = await teacher.fetch(f"/api/classes/{other['id']}", "PATCH", json_body={"name": "Art 2"})
    assert r.code == 200 and body(r)["class"]["name"] == "Art 2"


@pytest.mark.gen_test
async def test_unknown_and_non_numeric_ids_are_404(signed_in):
    admin = await signed_in("boss", "admin")
    for raw in ("999", "abc", "-1", "1.5", "9" * 30, "%C2%B2"):
        for method, suffix, payload in (
            ("GET", "", None),
            ("PATCH", "", {"name": "x"}),
            ("DELETE", "", None),
            ("POST", "/code", None),
            ("DELETE", "/code", None),
            ("GET", "/members", None),
            ("POST", "/members", {"username": "boss"}),
            ("DELETE", "/members/1", None),
        ):
            r = await admin.fetch(f"/api/classes/{raw}{suffix}", method, json_body=payload)
            assert r.code == 404 and error_of(r) == "not_found", (raw, method, suffix)
    made = await _class(admin)
    for raw in ("abc", "999"):
        r = await admin.fetch(f"/api/classes/{made['id']}/members/{raw}", "DELETE")
        assert r.code == 404 and error_of(r) == "not_found"


@pytest.mark.gen_test
async def test_code_reset_and_close(signed_in):
    teacher = await signed_in("tess", "teacher")
    made = await _class(teacher)
    old = made["joinCode"]
    r = await teacher.fetch(f"/api/classes/{made['id']}/code", "POST")
    assert r.code == 200
    new = body(r)["joinCode"]
    assert new != old and len(new) == CODE_LENGTH
    kid = await signed_in("kid")
    r = await _join(kid, old)
    assert r.code == 404 and error_of(r) == "not_found"
    r = await teacher.fetch(f"/api/classes/{made['id']}/code", "DELETE")
    assert r.code == 204
    r = await _join(kid, new)
    assert r.code == 404
    r = await teacher.fetch(f"/api/classes/{made['id']}")
    assert body(r)["class"]["joinCode"] is None


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "payload", [{}, {"code": 12345678}, {"code": None}, {"code": ["A"]}, {"code": "A" * 65}]
)
async def test_join_bad_input_is_400(signed_in, payload):
    kid = await signed_in("kid")
    r = await kid.fetch("/api/classes/join", "POST", json_body=payload)
    assert r.code == 400 and error_of(r) == "bad_request" and "code" in body(r)["fields"]


@pytest.mark.gen_test
async def test_members_add_list_and_class_roles(signed_in):
    teacher = await signed_in("tess", "teacher")
    other = await signed_in("tom", "teacher")
    kid = await signed_in("kid")
    made = await _class(teacher)
    path = f"/api/classes/{made['id']}/members"
    r = await teacher.fetch(path, "POST", json_body={"username": " KID "})
    assert r.code == 201, r.body
    member = body(r)["member"]
    assert member["id"] == kid.user.id and member["classRole"] == "student"
    assert "password" not in json.dumps(member).lower()
    r = await teacher.fetch(path, "POST", json_body={"username": "tom", "classRole": "teacher"})
    assert r.code == 201 and body(r)["member"]["classRole"] == "teacher"
    # A student account cannot be made a class teacher.
    r = await teacher.fetch(path, "POST", json_body={"username": "kid", "classRole": "teacher"})
    assert r.code == 400 and "classRole" in body(r)["fields"]
    for bad in ("admin", "owner", 5, ["student"], ""):
        r = await teacher.fetch(path, "POST", json_body={"username": "kid", "classRole": bad})
        assert r.code == 400 and "classRole" in body(r)["fields"], bad
    for bad in (None, 5, ["kid"], "x" * 65):
        r = await teacher.fetch(path, "POST", json_body={"username": bad})
        assert r.code == 400 and "username" in body(r)["fields"], bad
    r = await teacher.fetch(path, "POST", json_body={"username": "nobody"})
    assert r.code == 404 and error_of(r) == "not_found"
    r = await kid.fetch(path)
    members = body(r)["members"]
    assert [(m["username"], m["classRole"]) for m in members] == [
        ("tess", "teacher"),
        ("tom", "teacher"),
        ("kid", "student"),
    ]
    # The added teacher manages the class too.
    r = await other.fetch(f"/api/classes/{made['id']}/code", "POST")
    assert r.code == 200


@pytest.mark.gen_test
async def test_who_may_remove_members(signed_in):
    teacher = await signed_in("tess", "teacher")
    kid = await signed_in("kid")
    pal = await signed_in("pal")
    admin = await signed_in("boss", "admin")
    made = await _class(teacher)
    for who in (kid, pal):
        assert (await _join(who, made["joinCode"])).code == 200
    base = f"/api/classes/{made['id']}/members"
    # A pupil cannot remove another pupil, nor the teacher.
    for target in (pal.user.id, teacher.user.id):
        r = await kid.fetch(f"{base}/{target}", "DELETE")
        assert r.code == 403 and error_of(r) == "forbidden"
    # ... but may leave.
    r = await kid.fetch(f"{base}/{kid.user.id}", "DELETE")
    assert r.code == 204
    r = await kid.fetch(f"/api/classes/{made['id']}")
    assert r.code == 404
    r = await teacher.fetch(f"{base}/{pal.user.id}", "DELETE")
    assert r.code == 204
    r = await teacher.fetch(f"{base}/{pal.user.id}", "DELETE")
    assert r.code == 404 and error_of(r) == "not_found"
    # The last teacher leaves; an admin still manages the class.
    r = await teacher.fetch(f"{base}/{teacher.user.id}", "DELETE")
    assert r.code == 204
    r = await admin.fetch(f"/api/classes/{made['id']}", "PATCH", json_body={"name": "5A2"})
    assert r.code == 200 and body(r)["class"]["memberCount"] == 0


@pytest.mark.gen_test
async def test_a_member_pupil_cannot_manage(signed_in):
    teacher = await signed_in("tess", "teacher")
    kid = await signed_in("kid")
    made = await _class(teacher)
    await _join(kid, made["joinCode"])
    path = f"/api/classes/{made['id']}"
    for method, suffix, payload in (
        ("PATCH", "", {"name": "mine"}),
        ("DELETE", "", None),
        ("POST", "/code", None),
        ("DELETE", "/code", None),
        ("POST", "/members", {"username": "kid"}),
    ):
        r = await kid.fetch(path + suffix, method, json_body=payload)
        assert r.code == 403 and error_of(r) == "forbidden", (method, suffix)


@pytest.mark.gen_test
async def test_delete_class_takes_its_channels_and_messages(signed_in, ctx):
    teacher = await signed_in("tess", "teacher")
    made = await _class(teacher)
    r = await teacher.fetch(
        "/api/channels", "POST", json_body={"name": "maths", "classId": made["id"]}
    )
    channel = body(r)["channel"]
    await ctx.db.add_message(channel["id"], teacher.user, "hello")
    r = await teacher.fetch(f"/api/classes/{made['id']}", "DELETE")
    assert r.code == 204
    assert await ctx.db.get_channel(channel["id"]) is None
    assert await ctx.db.list_messages(channel["id"]) == []
    r = await teacher.fetch(f"/api/classes/{made['id']}", "DELETE")
    assert r.code == 404
    names = [c["name"] for c in body(await teacher.fetch("/api/channels"))["channels"]]
    assert names == ["general"]


@pytest.mark.gen_test
async def test_class_channels_rules(signed_in):
    teacher = await signed_in("tess", "teacher")
    tom = await signed_in("tom", "teacher")
    kid = await signed_in("kid")
    admin = await signed_in("boss", "admin")
    a = await _class(teacher, "5A")
    b = await _class(tom, "5B")
    await _join(kid, a["joinCode"])
    r = await teacher.fetch(
        "/api/channels", "POST", json_body={"name": "maths", "classId": a["id"]}
    )
    assert r.code == 201 and body(r)["channel"]["classId"] == a["id"]
    # The same name in another class, and school-wide, is free.
    r = await tom.fetch("/api/channels", "POST", json_body={"name": "maths", "classId": b["id"]})
    assert r.code == 201
    r = await admin.fetch("/api/channels", "POST", json_body={"name": "maths"})
    assert r.code == 201 and body(r)["channel"]["classId"] is None
    r = await admin.fetch("/api/channels", "POST", json_body={"name": "Maths", "classId": a["id"]})
    assert r.code == 409 and error_of(r) == "conflict"
    # A teacher of A cannot make a channel in B (not visible: 404), nor a kid anywhere.
    r = await teacher.fetch("/api/channels", "POST", json_body={"name": "x", "classId": b["id"]})
    assert r.code == 404 and error_of(r) == "not_found"
    r = await kid.fetch("/api/channels", "POST", json_body={"name": "x", "classId": a["id"]})
    assert r.code == 403
    for bad in ("1", 1.5, True, [1]):
        r = await admin.fetch("/api/channels", "POST", json_body={"name": "y", "classId": bad})
        assert r.code == 400 and "classId" in body(r)["fields"], bad
    for missing in (0, -3, 999, 2**70):
        r = await admin.fetch("/api/channels", "POST", json_body={"name": "y", "classId": missing})
        assert r.code == 404, (missing, r.body)
    # Who sees what.
    names = {
        c["name"] + str(c["classId"]) for c in body(await kid.fetch("/api/channels"))["channels"]
    }
    assert names == {"generalNone", "mathsNone", f"maths{a['id']}"}
    assert len(body(await admin.fetch("/api/channels"))["channels"]) == 4


@pytest.mark.gen_test
async def test_class_channels_are_deleted_by_their_class_teachers(signed_in):
    tess = await signed_in("tess", "teacher")
    tom = await signed_in("tom", "teacher")
    made = await _class(tess)
    r = await tess.fetch(
        f"/api/classes/{made['id']}/members",
        "POST",
        json_body={"username": "tom", "classRole": "student"},
    )
    assert r.code == 201
    r = await tom.fetch("/api/classes/join", "POST", json_body={"code": made["joinCode"]})
    ids = []
    for name in ("one", "two"):
        r = await tess.fetch(
            "/api/channels", "POST", json_body={"name": name, "classId": made["id"]}
        )
        ids.append(body(r)["channel"]["id"])
    # A teacher account that is a class student there may see but not delete, nor create.
    r = await tom.fetch(f"/api/channels/{ids[0]}", "DELETE")
    assert r.code == 403 and error_of(r) == "forbidden"
    r = await tom.fetch("/api/channels", "POST", json_body={"name": "x", "classId": made["id"]})
    assert r.code == 403
    # Made a class teacher, he may.
    await tess.fetch(
        f"/api/classes/{made['id']}/members",
        "POST",
        json_body={"username": "tom", "classRole": "teacher"},
    )
    r = await tom.fetch(f"/api/channels/{ids[0]}", "DELETE")
    assert r.code == 204
    r = await tess.fetch(f"/api/channels/{ids[1]}", "DELETE")
    assert r.code == 204
