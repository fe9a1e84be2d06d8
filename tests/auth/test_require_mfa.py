"""`require-mfa` (SPEC §14): a signed-in user of a listed role without a second factor is sent
to /account from every page, and the API answers 403 `mfa_enrollment_required`, except the
enrolment, `users/me`, sign-in and sign-out, csrf and reauth endpoints; enrolling frees them."""

from __future__ import annotations

from urllib.parse import urlencode

import pyotp
import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from tests.support import body, signed_in
from tests.support.ws import ws_url

REQUIRED = pytest.mark.parametrize("settings", [{"require_mfa": ("admin",)}], indirect=True)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

GATED_API = [
    ("GET", "/api/channels", None),
    ("POST", "/api/channels", {"name": "maths"}),
    ("GET", "/api/sessions", None),
    ("GET", "/api/admin/users", None),
    ("GET", "/api/admin/audit", None),
    ("POST", "/api/users/me/password", {"currentPassword": "x", "newPassword": "y"}),
]
OPEN_API = [
    ("GET", "/api/users/me"),
    ("GET", "/api/auth/csrf"),
    ("POST", "/api/users/me/totp"),
    ("GET", "/api/openapi.json"),
]
GATED_PAGES = ["/dashboard", "/chat", "/sessions", "/admin", "/", "/no-such-page"]


@pytest.mark.gen_test
@REQUIRED
async def test_api_refuses_until_enrolment_except_the_open_endpoints(make_client, make_user):
    admin = await signed_in(make_client, make_user, "boss", "admin")
    for method, path, payload in GATED_API:
        r = await admin.fetch(path, method, json_body=payload)
        assert r.code == 403, (path, r.body)
        assert body(r)["error"] == "mfa_enrollment_required"
        assert "/account" in body(r)["message"]
    for method, path in OPEN_API:
        r = await admin.fetch(path, method)
        assert r.code == 200, (path, r.body)
    # The passkey endpoints are open by path (not routed in this build: 404, not 403).
    r = await admin.fetch("/api/users/me/passkeys", "GET")
    assert r.code != 403
    r = await admin.fetch("/api/users/me/passkeys/options", "POST")
    assert r.code != 403
    # Signing out stays possible.
    assert (await admin.fetch("/api/auth/logout", "POST")).code == 200


@pytest.mark.gen_test
@REQUIRED
async def test_pages_redirect_to_account_until_enrolment(make_client, make_user):
    admin = await signed_in(make_client, make_user, "boss", "admin")
    for path in GATED_PAGES:
        r = await admin.fetch(path)
        assert r.code == 302 and r.headers["Location"] == "/account", path
    r = await admin.fetch("/account")
    assert r.code == 200 and 'id="mfa-required"' in r.body.decode()
    assert (await admin.fetch("/static/style.css")).code == 200
    xsrf = await admin.form_xsrf("/account")
    r = await admin.fetch(
        "/admin/users/1", "POST", body=urlencode({"_xsrf": xsrf, "action": "x"}), headers=FORM
    )
    assert r.code == 302 and r.headers["Location"] == "/account"
    # The chat socket is refused before any upgrade.
    request = HTTPRequest(ws_url(admin.base_url), headers={"Cookie": admin.cookie_header()})
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(request)
    assert refused.value.code == 403
    r = await admin.fetch("/logout", "POST", body=urlencode({"_xsrf": xsrf}), headers=FORM)
    assert r.code == 302 and r.headers["Location"] == "/login"


@pytest.mark.gen_test
@REQUIRED
async def test_enrolling_frees_the_user_and_other_roles_are_never_held(
    make_client, make_user, clock
):
    pupil = await signed_in(make_client, make_user, "pupil", "student")
    teacher = await signed_in(make_client, make_user, "tess", "teacher")
    for client in (pupil, teacher):
        assert (await client.fetch("/api/channels")).code == 200
        assert (await client.fetch("/dashboard")).code == 200
    admin = await signed_in(make_client, make_user, "boss", "admin")
    assert (await admin.fetch("/api/channels")).code == 403
    r = await admin.fetch("/api/users/me/totp", "POST")
    app = pyotp.TOTP(body(r)["secret"])
    assert (await admin.fetch("/api/channels")).code == 403  # pending is not enough
    r = await admin.fetch(
        "/api/users/me/totp/confirm", "POST", json_body={"code": app.at(clock.now)}
    )
    assert r.code == 200
    assert (await admin.fetch("/api/channels")).code == 200
    assert (await admin.fetch("/dashboard")).code == 200
    assert (await admin.fetch("/api/admin/users")).code == 200


@pytest.mark.gen_test
async def test_nothing_is_held_when_require_mfa_is_empty(make_client, make_user):
    admin = await signed_in(make_client, make_user, "boss", "admin")
    assert (await admin.fetch("/api/admin/users")).code == 200
    assert (await admin.fetch("/admin")).code == 200
