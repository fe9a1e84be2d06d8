"""Recent sign-in with an authenticator app (SPEC §14): `POST /api/auth/reauth` needs the
password and a code; a wrong code counts like a wrong password (back-off, `reauth_failed`),
a code is never taken twice, and the admin pages ask for both inline."""

from __future__ import annotations

from urllib.parse import urlencode

import pyotp
import pytest

from tests.support import PASSWORD, body, signed_in

WINDOW = 600.0
STEP = 30
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def admin_with_app(make_client, make_user, clock):
    admin = await signed_in(make_client, make_user, "boss", "admin")
    r = await admin.fetch("/api/users/me/totp", "POST")
    app = pyotp.TOTP(body(r)["secret"])
    r = await admin.fetch(
        "/api/users/me/totp/confirm", "POST", json_body={"code": app.at(clock.now)}
    )
    assert r.code == 200
    clock.advance(WINDOW + STEP)
    return admin, app


async def reauth(client, **payload):
    return await client.fetch("/api/auth/reauth", "POST", json_body=payload)


@pytest.mark.gen_test
async def test_reauth_needs_password_and_code(make_client, make_user, ctx, clock):
    admin, app = await admin_with_app(make_client, make_user, clock)
    pupil = await make_user("pupil")
    target = f"/api/admin/users/{pupil.id}"
    assert (await admin.fetch(target, "PATCH", json_body={"role": "teacher"})).code == 401
    r = await reauth(admin, password=PASSWORD)
    assert r.code == 400 and body(r)["error"] == "bad_request"
    assert set(body(r)["fields"]) == {"code"}
    r = await reauth(admin, password="not my password", code=app.at(clock.now))
    assert r.code == 400 and set(body(r)["fields"]) == {"password"}
    r = await reauth(admin, password=PASSWORD, code="000000")
    assert r.code == 400 and body(r)["error"] == "invalid_code"
    assert set(body(r)["fields"]) == {"code"}
    cookie = admin.cookies["plp_session"]
    code = app.at(clock.now)
    r = await reauth(admin, password=PASSWORD, code=code)
    assert r.code == 200 and body(r) == {"ok": True}
    assert admin.cookies["plp_session"] == cookie  # same token
    assert (await admin.fetch(target, "PATCH", json_body={"role": "teacher"})).code == 200
    # The same code again, a window later: refused (never taken twice).
    clock.advance(WINDOW + 1)
    assert (await reauth(admin, password=PASSWORD, code=code)).code == 400
    await ctx.audit.sync()
    details = [
        (e.event, e.detail) for e in await ctx.db.list_audit(100) if e.event.startswith("reauth_")
    ]
    assert details[1] == ("reauth_succeeded", {"method": "password+totp"})
    assert ("reauth_failed", {"method": "totp"}) in details
    assert ("reauth_failed", {"method": "password"}) in details


@pytest.mark.gen_test
async def test_wrong_reauth_codes_count_like_failed_logins(make_client, make_user, clock):
    admin, app = await admin_with_app(make_client, make_user, clock)
    for _ in range(5):
        r = await reauth(admin, password=PASSWORD, code="000000")
        assert r.code == 400 and body(r)["error"] == "invalid_code"
    # Blocked like a login, even for the right password and code; the session lives on.
    r = await reauth(admin, password=PASSWORD, code=app.at(clock.now))
    assert r.code == 429 and r.headers["Retry-After"] == "30"
    assert (await make_client().login("boss")).code == 429
    assert (await admin.fetch("/api/users/me")).code == 200
    clock.advance(30)
    assert (await reauth(admin, password=PASSWORD, code=app.at(clock.now))).code == 200


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "payload,field",
    [
        ({"password": PASSWORD, "code": 123456}, "code"),
        ({"password": PASSWORD, "code": ""}, "code"),
        ({"password": PASSWORD, "code": "1" * 65}, "code"),
        ({"code": "123456"}, "password"),
    ],
)
async def test_reauth_with_code_bad_input(make_client, make_user, clock, payload, field):
    admin, _ = await admin_with_app(make_client, make_user, clock)
    r = await reauth(admin, **payload)
    assert r.code == 400 and body(r)["error"] == "bad_request"
    assert field in body(r)["fields"]


@pytest.mark.gen_test
async def test_without_the_app_a_code_is_not_needed(make_client, make_user, clock):
    admin = await signed_in(make_client, make_user, "boss", "admin")
    clock.advance(WINDOW + 1)
    assert (await reauth(admin, password=PASSWORD, code="ignored")).code == 200


@pytest.mark.gen_test
async def test_admin_page_asks_for_the_code_inline(make_client, make_user, ctx, clock):
    admin, app = await admin_with_app(make_client, make_user, clock)
    pupil = await make_user("pupil")
    xsrf = await admin.form_xsrf("/admin")
    fields = {"_xsrf": xsrf, "action": "role", "role": "teacher"}
    path = f"/admin/users/{pupil.id}"
    r = await admin.fetch(path, "POST", body=urlencode(fields), headers=FORM)
    assert r.code == 200
    page = r.body.decode()
    assert 'name="reauth_password"' in page and 'name="reauth_code"' in page
    wrong = {**fields, "reauth_password": PASSWORD, "reauth_code": "000000"}
    r = await admin.fetch(path, "POST", body=urlencode(wrong), headers=FORM)
    assert r.code == 400
    page = r.body.decode()
    assert 'aria-invalid="true" aria-describedby="reauth_code-error"' in page
    assert (await ctx.db.get_user(pupil.id)).role == "student"
    right = {**wrong, "reauth_code": app.at(clock.now)}
    r = await admin.fetch(path, "POST", body=urlencode(right), headers=FORM)
    assert r.code == 302
    assert (await ctx.db.get_user(pupil.id)).role == "teacher"
