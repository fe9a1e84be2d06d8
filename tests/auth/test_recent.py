"""Recent sign-in (SPEC §14): sensitive admin actions need a sign-in within `reauth-window`;
`POST /api/auth/reauth` renews it for the same session, throttled like a login; the admin
pages ask for the password inline and then carry on with the action."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from tests.support import PASSWORD, body, signed_in, visible_text

WINDOW = 600.0  # the default reauth-window
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def admin_and_pupil(make_client, make_user):
    pupil = await make_user("pupil")
    admin = await signed_in(make_client, make_user, "boss", "admin")
    return admin, pupil


async def reauth(client, password: object = PASSWORD):
    return await client.fetch("/api/auth/reauth", "POST", json_body={"password": password})


async def post_form(client, path: str, fields: dict):
    return await client.fetch(path, "POST", body=urlencode(fields), headers=FORM)


SENSITIVE = [
    ("PATCH", "/api/admin/users/{id}", {"role": "teacher"}),
    ("PATCH", "/api/admin/users/{id}", {"disabled": True}),
    ("DELETE", "/api/admin/users/{id}/sessions", None),
    ("POST", "/api/users/{id}/reset-code", None),
]


@pytest.mark.gen_test
@pytest.mark.parametrize("method,path,payload", SENSITIVE)
async def test_sensitive_actions_need_a_recent_sign_in(
    make_client, make_user, ctx, clock, method, path, payload
):
    admin, pupil = await admin_and_pupil(make_client, make_user)
    target = path.format(id=pupil.id)
    clock.advance(WINDOW + 1)
    r = await admin.fetch(target, method, json_body=payload)
    assert r.code == 401
    assert body(r)["error"] == "reauth_required"
    assert "Set-Cookie" not in r.headers or "plp_session" not in r.headers["Set-Cookie"]
    assert await ctx.db.get_user(pupil.id) == pupil  # nothing changed
    assert await ctx.db.get_reset_code(pupil.id) is None
    assert (await admin.fetch("/api/users/me")).code == 200  # still signed in
    cookie = admin.cookies["plp_session"]
    r = await reauth(admin)
    assert r.code == 200 and body(r) == {"ok": True}
    assert admin.cookies["plp_session"] == cookie  # same token
    r = await admin.fetch(target, method, json_body=payload)
    assert r.code in (200, 201, 204), r.body
    # The renewal lasts one window, then the question comes back.
    clock.advance(WINDOW + 1)
    assert (await admin.fetch(target, method, json_body=payload)).code == 401


@pytest.mark.gen_test
async def test_a_fresh_sign_in_is_recent_and_enabling_never_asks(make_client, make_user, clock):
    admin, pupil = await admin_and_pupil(make_client, make_user)
    r = await admin.fetch(f"/api/admin/users/{pupil.id}", "PATCH", json_body={"disabled": True})
    assert r.code == 200
    clock.advance(WINDOW + 1)
    r = await admin.fetch(f"/api/admin/users/{pupil.id}", "PATCH", json_body={"disabled": False})
    assert r.code == 200 and body(r)["user"]["disabled"] is False


@pytest.mark.gen_test
async def test_wrong_reauth_passwords_count_like_failed_logins(make_client, make_user, clock, ctx):
    admin, pupil = await admin_and_pupil(make_client, make_user)
    clock.advance(WINDOW + 1)
    for _ in range(5):
        r = await reauth(admin, "not my password")
        assert r.code == 400
        assert body(r)["fields"] == {"password": "The password is not correct."}
    # Blocked like a login, even for the right password, and the session lives on.
    r = await reauth(admin)
    assert r.code == 429 and r.headers["Retry-After"] == "30"
    assert (await make_client().login("boss", PASSWORD)).code == 429
    assert (await admin.fetch("/api/users/me")).code == 200
    clock.advance(30)
    assert (await reauth(admin)).code == 200
    await ctx.audit.sync()
    events = [e for e in await ctx.db.list_audit(100) if e.event.startswith("reauth_")]
    assert [e.event for e in events] == ["reauth_succeeded"] + ["reauth_failed"] * 5
    assert all(e.detail == {"method": "password"} for e in events)


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "payload,field",
    [({}, "password"), ({"password": 5}, "password"), ({"password": ""}, "password")],
)
async def test_reauth_bad_input(make_client, make_user, payload, field):
    admin, _ = await admin_and_pupil(make_client, make_user)
    r = await admin.fetch("/api/auth/reauth", "POST", json_body=payload)
    assert r.code == 400
    assert body(r)["error"] == "bad_request" and field in body(r)["fields"]


@pytest.mark.gen_test
async def test_reauth_refuses_non_objects_strangers_and_missing_xsrf(make_client, make_user):
    admin, _ = await admin_and_pupil(make_client, make_user)
    r = await admin.fetch(
        "/api/auth/reauth", "POST", body=b"[1]", headers={"Content-Type": "application/json"}
    )
    assert r.code == 400
    r = await make_client().fetch("/api/auth/reauth", "POST", json_body={"password": PASSWORD})
    assert r.code == 401 and body(r)["error"] == "not_authenticated"
    r = await admin.fetch("/api/auth/reauth", "POST", json_body={"password": PASSWORD}, xsrf=False)
    assert r.code == 403 and body(r)["error"] == "xsrf"


@pytest.mark.gen_test
async def test_admin_page_asks_inline_then_carries_on(make_client, make_user, ctx, clock):
    admin, pupil = await admin_and_pupil(make_client, make_user)
    clock.advance(WINDOW + 1)
    xsrf = await admin.form_xsrf("/admin")
    fields = {"_xsrf": xsrf, "action": "role", "role": "teacher"}
    r = await post_form(admin, f"/admin/users/{pupil.id}", fields)
    assert r.code == 200
    page = r.body.decode()
    assert "Confirm it is you" in visible_text(page)
    assert "Changing a role needs a recent sign-in" in visible_text(page)
    # The page posts the same action back, with the fields as they were.
    assert f'action="/admin/users/{pupil.id}"' in page
    assert re.search(r'name="action" value="role"', page)
    assert re.search(r'name="role" value="teacher"', page)
    assert (await ctx.db.get_user(pupil.id)).role == "student"
    # A wrong password: the same page, the error at the field, nothing done.
    wrong = {**fields, "reauth_password": "not my password"}
    r = await post_form(admin, f"/admin/users/{pupil.id}", wrong)
    assert r.code == 400
    page = r.body.decode()
    assert 'aria-invalid="true" aria-describedby="reauth_password-error"' in page
    assert 'id="reauth_password-error"' in page
    assert (await ctx.db.get_user(pupil.id)).role == "student"
    # The right one: the role changes and the admin lands on /admin as after any action.
    right = {**fields, "reauth_password": PASSWORD}
    r = await post_form(admin, f"/admin/users/{pupil.id}", right)
    assert r.code == 302
    assert r.headers["Location"] == f"/admin?done=role&user={pupil.id}"
    assert (await ctx.db.get_user(pupil.id)).role == "teacher"


@pytest.mark.gen_test
async def test_sessions_show_how_they_signed_in(make_client, make_user):
    client = make_client()
    r = await client.register("newkid", PASSWORD)
    assert r.code == 201
    r = await client.fetch("/api/sessions")
    assert [s["method"] for s in body(r)["sessions"]] == ["password"]
    r = await client.fetch("/sessions")
    assert "Signed in with" in r.body.decode()
    assert "Password" in visible_text(r.body.decode())


@pytest.mark.gen_test
async def test_admin_reset_code_page_asks_inline_then_shows_the_code(
    make_client, make_user, ctx, clock
):
    admin, pupil = await admin_and_pupil(make_client, make_user)
    clock.advance(WINDOW + 1)
    xsrf = await admin.form_xsrf("/admin")
    path = f"/admin/users/{pupil.id}/reset-code"
    r = await post_form(admin, path, {"_xsrf": xsrf})
    assert r.code == 200
    assert "Making a reset code needs a recent sign-in" in visible_text(r.body.decode())
    assert await ctx.db.get_reset_code(pupil.id) is None
    r = await post_form(admin, path, {"_xsrf": xsrf, "reauth_password": PASSWORD})
    assert r.code == 200
    assert await ctx.db.get_reset_code(pupil.id) is not None
    assert re.search(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", r.body.decode())


@pytest.mark.gen_test
async def test_a_reset_signs_in_with_method_reset(make_client, make_user):
    admin, pupil = await admin_and_pupil(make_client, make_user)
    r = await admin.fetch(f"/api/users/{pupil.id}/reset-code", "POST")
    assert r.code == 201
    kid = make_client()
    r = await kid.fetch(
        "/api/auth/reset",
        "POST",
        json_body={
            "username": "pupil",
            "code": body(r)["code"],
            "newPassword": "a new passphrase 2",
        },
    )
    assert r.code == 200, r.body
    r = await kid.fetch("/api/sessions")
    assert [s["method"] for s in body(r)["sessions"]] == ["reset"]
