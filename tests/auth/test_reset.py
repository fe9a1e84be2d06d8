"""Reset codes over real HTTP and WebSocket (SPEC §13): issuing, using, expiry, voiding, the
disabled account, old sessions and sockets ended, the per-address limit, and bad input."""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import re

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from plp.auth.reset import ALPHABET
from tests.support import PASSWORD, body, signed_in
from tests.support.ws import Peer, ws_url

NEW_PASSWORD = "a brand new passphrase"
CODE_RE = re.compile(r"^[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}$")


async def issue(admin, user_id: int):
    return await admin.fetch(f"/api/users/{user_id}/reset-code", "POST", json_body={})


async def code_for(admin, user_id: int) -> str:
    r = await issue(admin, user_id)
    assert r.code == 201, r.body
    return body(r)["code"]


async def use(client, username: str, code: str, password: str = NEW_PASSWORD):
    return await client.fetch(
        "/api/auth/reset",
        "POST",
        json_body={"username": username, "code": code, "newPassword": password},
    )


@pytest.fixture
def admin_and_kid(make_client, make_user):
    async def make():
        admin = await signed_in(make_client, make_user, "head", "admin")
        kid = await make_user("kid")
        return admin, kid

    return make


def assert_invalid_code(r) -> None:
    assert r.code == 400, r.body
    assert body(r)["error"] == "invalid_code"
    assert "plp_session" not in r.headers.get("Set-Cookie", "")


@pytest.mark.gen_test
async def test_issue_and_reset_ends_old_sessions_and_sockets(
    admin_and_kid, make_client, session_cookie, base_url, ctx, clock
):
    admin, kid = await admin_and_kid()
    old = make_client()
    assert (await old.login("kid")).code == 200
    cookie = await session_cookie(kid.id)
    conn = await websocket_connect(HTTPRequest(ws_url(base_url), headers={"Cookie": cookie}))
    peer = Peer(conn, kid, cookie)
    await peer.expect("hello")

    r = await issue(admin, kid.id)
    assert r.code == 201, r.body
    assert r.headers["Cache-Control"] == "no-store"
    data = body(r)
    assert set(data) == {"code", "expiresAt"}
    assert CODE_RE.match(data["code"]) and set(data["code"].replace("-", "")) <= set(ALPHABET)
    expires = _dt.datetime.fromisoformat(data["expiresAt"].replace("Z", "+00:00"))
    assert abs(expires.timestamp() - (clock.now + 900)) < 1

    # Typed with spaces instead of hyphens, in lower case: the same code.
    typed = " " + data["code"].replace("-", " ").lower() + " "
    pupil = make_client()
    r = await use(pupil, "KID", typed)
    assert r.code == 200, r.body
    assert body(r)["user"]["username"] == "kid"
    assert (await pupil.fetch("/api/users/me")).code == 200
    assert body(await pupil.fetch("/api/users/me"))["user"]["id"] == kid.id
    assert (await old.fetch("/api/users/me")).code == 401
    assert await peer.closed() == 4001
    conn.close()
    sessions = await ctx.store.list_for_user(kid.id)
    assert len(sessions) == 1
    assert (await make_client().login("kid", NEW_PASSWORD)).code == 200
    assert (await make_client().login("kid", PASSWORD)).code == 401


@pytest.mark.gen_test
async def test_code_is_single_use(admin_and_kid, make_client):
    admin, kid = await admin_and_kid()
    code = await code_for(admin, kid.id)
    assert (await use(make_client(), "kid", code)).code == 200
    assert_invalid_code(await use(make_client(), "kid", code, "another fine passphrase"))
    assert (await make_client().login("kid", NEW_PASSWORD)).code == 200


@pytest.mark.gen_test
async def test_racing_requests_use_a_code_once(admin_and_kid, make_client):
    admin, kid = await admin_and_kid()
    code = await code_for(admin, kid.id)
    answers = await asyncio.gather(
        *(use(make_client(), "kid", code, f"racing passphrase {i}") for i in range(4))
    )
    assert sorted(r.code for r in answers) == [200, 400, 400, 400]


@pytest.mark.gen_test
async def test_code_expires(admin_and_kid, make_client, clock):
    admin, kid = await admin_and_kid()
    code = await code_for(admin, kid.id)
    clock.advance(901)
    assert_invalid_code(await use(make_client(), "kid", code))
    assert (await make_client().login("kid", PASSWORD)).code == 200


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", [{"reset_code_ttl": 5.0}], indirect=True)
async def test_ttl_comes_from_the_setting(admin_and_kid, make_client, clock):
    admin, kid = await admin_and_kid()
    code = await code_for(admin, kid.id)
    clock.advance(4)
    assert (await use(make_client(), "kid", code)).code == 200
    code = await code_for(admin, kid.id)
    clock.advance(5)
    assert_invalid_code(await use(make_client(), "kid", code, "another fine passphrase"))


@pytest.mark.gen_test
async def test_newer_code_voids_the_older(admin_and_kid, make_client):
    admin, kid = await admin_and_kid()
    first = await code_for(admin, kid.id)
    second = await code_for(admin, kid.id)
    assert first != second
    assert_invalid_code(await use(make_client(), "kid", first))
    assert (await use(make_client(), "kid", second)).code == 200


@pytest.mark.gen_test
async def test_five_wrong_tries_void_the_code(admin_and_kid, make_client, ctx):
    admin, kid = await admin_and_kid()
    code = await code_for(admin, kid.id)
    wrong = "ABCD-EFGH-JKMN" if code != "ABCD-EFGH-JKMN" else "NMKJ-HGFE-DCBA"
    for _ in range(4):
        assert_invalid_code(await use(make_client(), "kid", wrong))
    stored = await ctx.db.get_reset_code(kid.id)
    assert stored is not None and stored.tries == 4
    assert_invalid_code(await use(make_client(), "kid", wrong))
    assert await ctx.db.get_reset_code(kid.id) is None
    assert_invalid_code(await use(make_client(), "kid", code))
    assert (await make_client().login("kid", PASSWORD)).code == 200


@pytest.mark.gen_test
async def test_four_wrong_tries_leave_the_code_usable(admin_and_kid, make_client):
    admin, kid = await admin_and_kid()
    code = await code_for(admin, kid.id)
    for wrong in ("ABCD-EFGH-JKMN", "short", "A" * 12, "NMKJ-HGFE-DCBA"):
        if wrong.replace("-", "") != code.replace("-", ""):
            assert_invalid_code(await use(make_client(), "kid", wrong))
    assert (await use(make_client(), "kid", code)).code == 200


@pytest.mark.gen_test
async def test_unknown_user_and_wrong_code_answer_the_same(admin_and_kid, make_client):
    admin, kid = await admin_and_kid()
    code = await code_for(admin, kid.id)
    unknown = await use(make_client(), "nobody-here", code)
    wrong = await use(make_client(), "kid", "ABCD-EFGH-JKMN")
    no_code = await use(make_client(), "head", code)  # a user without a code
    for r in (unknown, wrong, no_code):
        assert_invalid_code(r)
        assert body(r) == body(unknown)


@pytest.mark.gen_test
async def test_disabled_account_gets_403_and_keeps_the_code(admin_and_kid, make_client):
    admin, kid = await admin_and_kid()
    code = await code_for(admin, kid.id)
    r = await admin.fetch(f"/api/admin/users/{kid.id}", "PATCH", json_body={"disabled": True})
    assert r.code == 200
    r = await use(make_client(), "kid", code)
    assert r.code == 403 and body(r)["error"] == "account_disabled", r.body
    assert "plp_session" not in r.headers.get("Set-Cookie", "")
    assert (await make_client().login("kid", NEW_PASSWORD)).code in (401, 403)
    r = await admin.fetch(f"/api/admin/users/{kid.id}", "PATCH", json_body={"disabled": False})
    assert r.code == 200
    assert (await use(make_client(), "kid", code)).code == 200


@pytest.mark.gen_test
async def test_reset_clears_the_account_back_off(admin_and_kid, make_client):
    admin, kid = await admin_and_kid()
    for _ in range(5):
        await make_client().login("kid", "not the password")
    assert (await make_client().login("kid", PASSWORD)).code == 429
    code = await code_for(admin, kid.id)
    assert (await use(make_client(), "kid", code)).code == 200
    assert (await make_client().login("kid", NEW_PASSWORD)).code == 200


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", [{"login_failures_per_address": 3}], indirect=True)
async def test_wrong_codes_count_for_the_address_limit(admin_and_kid, make_client, make_user):
    admin, kid = await admin_and_kid()
    code = await code_for(admin, kid.id)
    for name in ("ghost1", "ghost2", "ghost3"):
        assert_invalid_code(await use(make_client(), name, "ABCD-EFGH-JKMN"))
    r = await use(make_client(), "kid", code)  # the right code, but the address is blocked
    assert r.code == 429 and body(r)["error"] == "rate_limited", r.body
    assert int(r.headers["Retry-After"]) >= 1
    # The same per-address count as failed logins: sign-in from here is blocked too.
    await make_user("other")
    assert (await make_client().login("other")).code == 429


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", [{"login_failures_per_address": 3}], indirect=True)
async def test_failed_logins_block_resets_from_the_address(admin_and_kid, make_client):
    admin, kid = await admin_and_kid()
    code = await code_for(admin, kid.id)
    for _ in range(3):
        assert (await make_client().login("ghost", "wrong password")).code == 401
    assert (await use(make_client(), "kid", code)).code == 429


@pytest.mark.gen_test
async def test_admin_cannot_issue_for_self_and_unknown_is_404(admin_and_kid, ctx):
    admin, kid = await admin_and_kid()
    me = body(await admin.fetch("/api/users/me"))["user"]["id"]
    r = await issue(admin, me)
    assert r.code == 403 and body(r)["error"] == "forbidden", r.body
    for raw in ("999999", "0", "abc", "-1", "1e3", "99999999999999999999"):
        r = await admin.fetch(f"/api/users/{raw}/reset-code", "POST", json_body={})
        assert r.code == 404 and body(r)["error"] == "not_found", (raw, r.body)
    assert await ctx.db.get_reset_code(me) is None


@pytest.mark.gen_test
async def test_student_may_issue_for_nobody(make_client, make_user, ctx):
    student = await signed_in(make_client, make_user, "pupil")
    other = await make_user("friend")
    me = body(await student.fetch("/api/users/me"))["user"]["id"]
    r = await issue(student, other.id)
    assert r.code == 404 and body(r)["error"] == "not_found", r.body
    r = await issue(student, 999999)
    assert r.code == 404 and body(r)["error"] == "not_found"
    r = await issue(student, me)
    assert r.code == 403 and body(r)["error"] == "forbidden"
    assert await ctx.db.get_reset_code(other.id) is None


@pytest.mark.gen_test
async def test_issuing_needs_a_session_and_xsrf(admin_and_kid, make_client):
    admin, kid = await admin_and_kid()
    r = await make_client().fetch(f"/api/users/{kid.id}/reset-code", "POST", json_body={})
    assert r.code == 401 and body(r)["error"] == "not_authenticated"
    r = await admin.fetch(f"/api/users/{kid.id}/reset-code", "POST", json_body={}, xsrf=False)
    assert r.code == 403 and body(r)["error"] == "xsrf"
    r = await admin.fetch(f"/api/users/{kid.id}/reset-code", "GET")
    assert r.code == 405


@pytest.mark.gen_test
async def test_reset_needs_xsrf(admin_and_kid, make_client):
    admin, kid = await admin_and_kid()
    code = await code_for(admin, kid.id)
    r = await make_client().fetch(
        "/api/auth/reset",
        "POST",
        json_body={"username": "kid", "code": code, "newPassword": NEW_PASSWORD},
        xsrf=False,
    )
    assert r.code == 403 and body(r)["error"] == "xsrf"
    assert (await use(make_client(), "kid", code)).code == 200


BAD_BODIES = [
    ({}, {"username", "code", "newPassword"}),
    ({"code": "X", "newPassword": NEW_PASSWORD}, {"username"}),
    ({"username": "kid", "newPassword": NEW_PASSWORD}, {"code"}),
    ({"username": "kid", "code": "X"}, {"newPassword"}),
    ({"username": 5, "code": "X", "newPassword": NEW_PASSWORD}, {"username"}),
    ({"username": "kid", "code": ["X"], "newPassword": NEW_PASSWORD}, {"code"}),
    ({"username": "kid", "code": {"a": 1}, "newPassword": NEW_PASSWORD}, {"code"}),
    ({"username": "kid", "code": "X", "newPassword": 12345678}, {"newPassword"}),
    ({"username": "kid", "code": "A" * 65, "newPassword": NEW_PASSWORD}, {"code"}),
    ({"username": "k" * 65, "code": "X", "newPassword": NEW_PASSWORD}, {"username"}),
    ({"username": "kid", "code": "X", "newPassword": "short"}, {"newPassword"}),
    ({"username": "kid", "code": "X", "newPassword": "password123"}, {"newPassword"}),
    ({"username": "kid", "code": "X", "newPassword": "kid"}, {"newPassword"}),
    ({"username": "kid", "code": "X", "newPassword": "p" * 257}, {"newPassword"}),
    ({"username": "kid", "code": "X", "newPassword": "a\x00" * 8}, {"newPassword"}),
]


@pytest.mark.gen_test
async def test_bad_input_is_a_400_naming_each_field_and_spends_no_try(
    admin_and_kid, make_client, ctx
):
    admin, kid = await admin_and_kid()
    code = await code_for(admin, kid.id)
    for data, fields in BAD_BODIES:
        r = await make_client().fetch("/api/auth/reset", "POST", json_body=data)
        assert r.code == 400, (data, r.body)
        answer = body(r)
        assert answer["error"] == "bad_request", (data, answer)
        assert set(answer["fields"]) == fields, (data, answer)
    for raw in (b"", b"[]", b"not json", b'"x"', b"{" * 5000, b'{"username": "\\ud800"}'):
        r = await make_client().fetch("/api/auth/reset", "POST", body=raw)
        assert r.code == 400 and body(r)["error"] == "bad_request", (raw[:20], r.body)
    r = await make_client().fetch("/api/auth/reset", "POST", body=b"x" * (70 * 1024))
    assert r.code == 413
    stored = await ctx.db.get_reset_code(kid.id)
    assert stored is not None and stored.tries == 0
    assert (await use(make_client(), "kid", code)).code == 200


@pytest.mark.gen_test
async def test_nul_and_odd_text_in_username_or_code_are_plain_wrong_codes(
    admin_and_kid, make_client
):
    admin, kid = await admin_and_kid()
    code = await code_for(admin, kid.id)
    for username, typed in (
        ("ki\x00d", code),
        ("kid", code[:-1] + "\x00"),
        ("kid", "\u0130" * 12),
        ("kid", code.replace("-", "\u2013")),
        ("kid\n", "ABCD EFGH JKMN"),
    ):
        assert_invalid_code(await use(make_client(), username, typed))
    # Four tries spent on kid's code (the first named no valid user): still usable.
    assert (await use(make_client(), "kid", code)).code == 200


@pytest.mark.gen_test
async def test_no_code_in_any_log_line_or_audit_row(admin_and_kid, make_client, ctx, caplog):
    caplog.set_level(logging.DEBUG)
    admin, kid = await admin_and_kid()
    codes = [await code_for(admin, kid.id) for _ in range(2)]
    assert_invalid_code(await use(make_client(), "kid", codes[0]))
    assert (await use(make_client(), "kid", codes[1])).code == 200
    r = await admin.fetch("/api/admin/audit?limit=500")
    events = body(r)["events"]
    names = [e["event"] for e in events]
    assert names.count("reset_code_issued") == 2 and names.count("password_reset") == 1
    issued = next(e for e in events if e["event"] == "reset_code_issued")
    assert issued["username"] == "kid" and issued["detail"]["by"] == "head"
    texts = [r.getMessage() for r in caplog.records] + [str(e) for e in events]
    rows = await ctx.db.list_audit(500)
    texts += [f"{row.detail} {row.username} {row.ip}" for row in rows]
    for code in codes:
        for form in (code, code.replace("-", ""), code.lower(), code.replace("-", "").lower()):
            assert not any(form in text for text in texts), form


@pytest.mark.gen_test
async def test_a_class_teacher_issues_codes_for_their_class_students_only(make_client, make_user):
    """SPEC §13: a teacher for a student of a class they teach; anyone else is 404."""
    teacher = await signed_in(make_client, make_user, "tess", "teacher")
    other_teacher = await make_user("tom", "teacher")
    mine = await make_user("kid")
    theirs = await make_user("stranger")
    r = await teacher.fetch("/api/classes", "POST", json_body={"name": "5A"})
    assert r.code == 201, r.body
    class_id = body(r)["class"]["id"]
    for name in ("kid", "tom"):
        role = "teacher" if name == "tom" else "student"
        r = await teacher.fetch(
            f"/api/classes/{class_id}/members",
            "POST",
            json_body={"username": name, "classRole": role},
        )
        assert r.code == 201, r.body
    r = await teacher.fetch(f"/api/users/{mine.id}/reset-code", "POST")
    assert r.code == 201, r.body
    # A student of no class of hers, and a fellow class teacher: not hers to manage.
    for target in (theirs, other_teacher):
        r = await teacher.fetch(f"/api/users/{target.id}/reset-code", "POST")
        assert r.code == 404, r.body
        assert body(r)["error"] == "not_found"
    # Removed from the class, the pupil is no longer hers either.
    r = await teacher.fetch(f"/api/classes/{class_id}/members/{mine.id}", "DELETE")
    assert r.code == 204
    r = await teacher.fetch(f"/api/users/{mine.id}/reset-code", "POST")
    assert r.code == 404
