"""Authenticator-app codes (SPEC §14) with real codes from pyotp and the secret the API gave:
enrolment, the half-done sign-in (`plp_mfa`), replays, ±1 step, recovery codes, the back-off,
turning the app off, every bad input, and no secret or code in any log line or audit row."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp
import pytest

from plp.auth import mfa
from tests.support import PASSWORD, body, signed_in, visible_text

STEP = 30
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def enrol(client, clock) -> tuple[pyotp.TOTP, list[str]]:
    """Turn the app on for the client's user: its TOTP and the recovery codes."""
    r = await client.fetch("/api/users/me/totp", "POST")
    assert r.code == 200, r.body
    app = pyotp.TOTP(body(r)["secret"])
    r = await client.fetch(
        "/api/users/me/totp/confirm", "POST", json_body={"code": app.at(clock.now)}
    )
    assert r.code == 200, r.body
    # The confirming code took the current step: the next sign-in needs a later one.
    clock.advance(STEP)
    return app, body(r)["recoveryCodes"]


async def enrolled(make_client, make_user, clock, name: str = "tess", role: str = "teacher"):
    client = await signed_in(make_client, make_user, name, role)
    app, codes = await enrol(client, clock)
    return client, app, codes


async def half_signed_in(make_client, name: str = "tess"):
    client = make_client()
    r = await client.login(name)
    assert r.code == 200, r.body
    assert body(r) == {"mfaRequired": True, "methods": ["totp", "recovery"]}
    return client, r


async def finish(client, **answer):
    return await client.fetch("/api/auth/login/mfa", "POST", json_body=answer)


async def events(ctx, prefix: str = "") -> list:
    await ctx.audit.sync()
    return [e for e in await ctx.db.list_audit(200) if e.event.startswith(prefix)]


@pytest.mark.gen_test
async def test_enrolment_gives_a_secret_uri_and_svg_and_is_not_active_yet(
    make_client, make_user, ctx
):
    client = await signed_in(make_client, make_user, "tess", "teacher")
    r = await client.fetch("/api/users/me/totp", "POST")
    assert r.code == 200
    data = body(r)
    assert set(data) == {"secret", "otpauthUri", "qrSvg"}
    assert re.fullmatch(r"[A-Z2-7]{32}", data["secret"])  # 160 bits of base32
    uri = urlsplit(data["otpauthUri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert uri.path == "/PersonalLearningPro:tess"
    query = parse_qs(uri.query)
    assert query["secret"] == [data["secret"]] and query["issuer"] == ["PersonalLearningPro"]
    svg = data["qrSvg"]
    assert svg.startswith('<svg role="img"') and "<title>" in svg
    assert "<script" not in svg and "http" not in svg.split("<title>")[0]
    # Stored sealed: the database never holds the secret as it is.
    record = await ctx.db.get_totp((await ctx.db.get_credentials("tess"))[0].id)
    assert record is not None and not record.active
    assert data["secret"] not in record.sealed_secret
    # Pending is not on: a password sign-in is still complete in itself.
    r = await make_client().login("tess")
    assert r.code == 200 and "user" in body(r)
    # Starting again replaces the pending secret.
    r2 = await client.fetch("/api/users/me/totp", "POST")
    assert r2.code == 200 and body(r2)["secret"] != data["secret"]


@pytest.mark.gen_test
async def test_confirm_needs_a_right_code_then_gives_ten_recovery_codes(
    make_client, make_user, ctx, clock
):
    client = await signed_in(make_client, make_user, "tess", "teacher")
    r = await client.fetch("/api/users/me/totp/confirm", "POST", json_body={"code": "123456"})
    assert r.code == 409 and body(r)["error"] == "conflict"  # nothing being set up
    app = pyotp.TOTP(body(await client.fetch("/api/users/me/totp", "POST"))["secret"])
    wrong = str((int(app.at(clock.now)) + 1) % 1_000_000).zfill(6)
    r = await client.fetch("/api/users/me/totp/confirm", "POST", json_body={"code": wrong})
    assert r.code == 400 and body(r)["error"] == "invalid_code"
    assert set(body(r)["fields"]) == {"code"}
    r = await client.fetch(
        "/api/users/me/totp/confirm", "POST", json_body={"code": app.at(clock.now)}
    )
    assert r.code == 200
    codes = body(r)["recoveryCodes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(re.fullmatch(r"([A-HJ-NP-TV-Z2-9]{4}-){3}[A-HJ-NP-TV-Z2-9]{4}", c) for c in codes)
    assert [e.event for e in await events(ctx, "totp_")] == ["totp_enabled"]
    # On: a new enrolment is refused (turning it off first needs a recent sign-in).
    r = await client.fetch("/api/users/me/totp", "POST")
    assert r.code == 409 and body(r)["error"] == "conflict"
    r = await client.fetch(
        "/api/users/me/totp/confirm", "POST", json_body={"code": app.at(clock.now + STEP)}
    )
    assert r.code == 409


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "payload",
    [{}, {"code": 123456}, {"code": ""}, {"code": None}, {"code": ["1"]}, {"code": "9" * 65}],
)
async def test_confirm_bad_input(make_client, make_user, payload):
    client = await signed_in(make_client, make_user, "tess", "teacher")
    await client.fetch("/api/users/me/totp", "POST")
    r = await client.fetch("/api/users/me/totp/confirm", "POST", json_body=payload)
    assert r.code == 400 and body(r)["error"] == "bad_request"
    assert set(body(r)["fields"]) == {"code"}


@pytest.mark.gen_test
async def test_totp_endpoints_refuse_strangers_and_missing_xsrf(make_client, make_user):
    stranger = make_client()
    for method, path in [
        ("POST", "/api/users/me/totp"),
        ("DELETE", "/api/users/me/totp"),
        ("POST", "/api/users/me/totp/confirm"),
    ]:
        r = await stranger.fetch(path, method, json_body={"code": "123456"})
        assert r.code == 401 and body(r)["error"] == "not_authenticated"
    client = await signed_in(make_client, make_user, "tess", "teacher")
    r = await client.fetch("/api/users/me/totp", "POST", xsrf=False)
    assert r.code == 403 and body(r)["error"] == "xsrf"
    r = await client.fetch(
        "/api/users/me/totp/confirm",
        "POST",
        body=b"[1]",
        headers={"Content-Type": "application/json"},
    )
    assert r.code == 400
    assert (await client.fetch("/api/users/me/totp", "GET")).code == 405


@pytest.mark.gen_test
async def test_password_sign_in_waits_for_the_code(make_client, make_user, ctx, clock):
    await enrolled(make_client, make_user, clock)
    client, r = await half_signed_in(make_client)
    # No session yet: only the signed plp_mfa cookie, HttpOnly, Lax, whole site, 5 minutes.
    assert "plp_session" not in client.cookies
    (cookie,) = [c for c in r.headers.get_list("Set-Cookie") if c.startswith("plp_mfa=")]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "max-age"} <= attributes
    assert "SameSite=Lax" in cookie and "Path=/" in cookie and "Max-Age=300" in cookie
    assert "Secure" not in cookie  # development; Secure in production like the session
    assert (await client.fetch("/api/users/me")).code == 401
    r = await finish(client, code=pyotp.TOTP(await secret_of(ctx, "tess")).at(clock.now))
    assert r.code == 200, r.body
    assert body(r)["user"]["username"] == "tess"
    assert "plp_mfa" not in client.cookies and "plp_session" in client.cookies
    r = await client.fetch("/api/sessions")
    assert [s["method"] for s in body(r)["sessions"]] == ["password+totp"] * 2 or [
        s["method"] for s in body(r)["sessions"] if s["current"]
    ] == ["password+totp"]
    login = await events(ctx, "login_succeeded")
    assert login[0].detail == {"method": "password+totp"}


async def secret_of(ctx, username: str) -> str:
    """The user's secret as the server reads it (to make codes after enrolment)."""
    from plp.auth import totp

    user = (await ctx.db.get_credentials(username))[0]
    record = await ctx.db.get_totp(user.id)
    return totp.box(ctx).open(record.sealed_secret, owner=f"totp:{user.id}")


@pytest.mark.gen_test
async def test_a_code_is_never_accepted_twice(make_client, make_user, ctx, clock):
    _, app, _ = await enrolled(make_client, make_user, clock)
    code = app.at(clock.now)
    first, _ = await half_signed_in(make_client)
    assert (await finish(first, code=code)).code == 200
    second, _ = await half_signed_in(make_client)
    r = await finish(second, code=code)
    assert r.code == 400 and body(r)["error"] == "invalid_code"
    assert "plp_session" not in second.cookies
    # The code of the confirmation's step is used up too (it was taken then).
    r = await finish(second, code=app.at(clock.now - STEP))
    assert r.code == 400
    clock.advance(STEP)
    assert (await finish(second, code=app.at(clock.now))).code == 200


@pytest.mark.gen_test
async def test_codes_one_step_either_side_are_accepted(make_client, make_user, clock):
    _, app, _ = await enrolled(make_client, make_user, clock)
    clock.advance(5 * STEP)
    client, _ = await half_signed_in(make_client)
    for offset in (-2, 2):  # two steps off: refused
        r = await finish(client, code=app.at(clock.now + offset * STEP))
        assert r.code == 400 and body(r)["error"] == "invalid_code"
    assert (await finish(client, code=app.at(clock.now - STEP))).code == 200
    client, _ = await half_signed_in(make_client)
    assert (await finish(client, code=app.at(clock.now + STEP))).code == 200
    # Having taken step +1, the current step is behind it: refused, as a replay would be.
    client, _ = await half_signed_in(make_client)
    assert (await finish(client, code=app.at(clock.now))).code == 400


@pytest.mark.gen_test
async def test_a_recovery_code_works_once(make_client, make_user, ctx, clock):
    _, _, codes = await enrolled(make_client, make_user, clock)
    client, _ = await half_signed_in(make_client)
    typed = codes[3].replace("-", " ").lower()  # hyphens, spaces and case do not matter
    r = await finish(client, recoveryCode=typed)
    assert r.code == 200 and body(r)["user"]["username"] == "tess"
    used = await events(ctx, "recovery_code_used")
    assert len(used) == 1 and used[0].detail == {"left": 9}
    client, _ = await half_signed_in(make_client)
    r = await finish(client, recoveryCode=codes[3])
    assert r.code == 400 and body(r)["error"] == "invalid_code"
    assert set(body(r)["fields"]) == {"recoveryCode"}
    assert (await finish(client, recoveryCode=codes[4])).code == 200


@pytest.mark.gen_test
async def test_five_wrong_codes_end_the_half_done_sign_in(make_client, make_user, ctx, clock):
    _, app, _ = await enrolled(make_client, make_user, clock)
    client, _ = await half_signed_in(make_client)
    for attempt in range(5):
        r = await finish(client, code="000000" if attempt % 2 else "not a code")
        assert r.code == 400 and body(r)["error"] == "invalid_code"
    assert body(r)["message"] == mfa.TOO_MANY
    r = await finish(client, code=app.at(clock.now))
    assert r.code == 401 and body(r)["error"] == "not_authenticated"
    assert "sign in again" in body(r)["message"]
    assert "plp_session" not in client.cookies
    failed = await events(ctx, "mfa_failed")
    assert len(failed) == 5 and all(e.detail == {"method": "totp"} for e in failed)


@pytest.mark.gen_test
async def test_wrong_codes_count_toward_the_account_back_off(make_client, make_user, clock):
    _, app, _ = await enrolled(make_client, make_user, clock)
    client, _ = await half_signed_in(make_client)
    for _ in range(3):
        assert (await finish(client, code="000000")).code == 400
    # The right password again does not clear the count: the codes are still being guessed.
    client, _ = await half_signed_in(make_client)
    for _ in range(2):
        assert (await finish(client, code="000000")).code == 400
    r = await make_client().login("tess")
    assert r.code == 429 and r.headers["Retry-After"] == "30"
    # A half-done sign-in is blocked too, even for the right code.
    r = await finish(client, code=app.at(clock.now))
    assert r.code == 429 and body(r)["error"] == "rate_limited"
    clock.advance(30)
    client, _ = await half_signed_in(make_client)
    assert (await finish(client, code=app.at(clock.now))).code == 200
    # A finished sign-in clears the count.
    for _ in range(4):
        client, _ = await half_signed_in(make_client)
        assert (await finish(client, code="000000")).code == 400
    client, _ = await half_signed_in(make_client)
    assert (await finish(client, code="000000")).code == 400


@pytest.mark.gen_test
async def test_plp_mfa_missing_tampered_expired_or_replayed_is_401(make_client, make_user, clock):
    _, app, _ = await enrolled(make_client, make_user, clock)
    r = await finish(make_client(), code=app.at(clock.now))
    assert r.code == 401 and body(r)["error"] == "not_authenticated"
    client, _ = await half_signed_in(make_client)
    good = client.cookies["plp_mfa"]
    client.cookies["plp_mfa"] = good[:-3] + ("abc" if not good.endswith("abc") else "abd")
    r = await finish(client, code=app.at(clock.now))
    assert r.code == 401 and "plp_session" not in client.cookies
    # The same id under a forged signature or none at all is refused too.
    client.cookies["plp_mfa"] = good.rsplit("|", 1)[0]
    assert (await finish(client, code=app.at(clock.now))).code == 401
    # Expired: five minutes later the pending entry is gone.
    client, _ = await half_signed_in(make_client)
    clock.advance(mfa.TTL + 1)
    r = await finish(client, code=app.at(clock.now))
    assert r.code == 401
    # Replayed: a used cookie finds nothing.
    client, _ = await half_signed_in(make_client)
    saved = client.cookies["plp_mfa"]
    assert (await finish(client, code=app.at(clock.now))).code == 200
    thief = make_client()
    thief.cookies["plp_mfa"] = saved
    r = await finish(thief, code=app.at(clock.now + STEP))
    assert r.code == 401 and "plp_session" not in thief.cookies


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "payload,field",
    [
        ({}, "code"),
        ({"code": "123456", "recoveryCode": "ABCD-EFGH-JKMN-PQRS"}, "code"),
        ({"code": 123456}, "code"),
        ({"code": ""}, "code"),
        ({"recoveryCode": 5}, "recoveryCode"),
        ({"recoveryCode": "x" * 65}, "recoveryCode"),
    ],
)
async def test_login_mfa_bad_input(make_client, make_user, clock, payload, field):
    await enrolled(make_client, make_user, clock)
    client, _ = await half_signed_in(make_client)
    r = await finish(client, **payload)
    assert r.code == 400 and body(r)["error"] == "bad_request"
    assert set(body(r)["fields"]) == {field}
    r = await client.fetch(
        "/api/auth/login/mfa", "POST", body=b"{", headers={"Content-Type": "application/json"}
    )
    assert r.code == 400
    r = await client.fetch("/api/auth/login/mfa", "POST", json_body={"code": "1"}, xsrf=False)
    assert r.code == 403 and body(r)["error"] == "xsrf"


@pytest.mark.gen_test
async def test_turning_off_needs_a_recent_sign_in(make_client, make_user, ctx, clock):
    client, app, _ = await enrolled(make_client, make_user, clock)
    clock.advance(601)
    r = await client.fetch("/api/users/me/totp", "DELETE")
    assert r.code == 401 and body(r)["error"] == "reauth_required"
    r = await client.fetch(
        "/api/auth/reauth", "POST", json_body={"password": PASSWORD, "code": app.at(clock.now)}
    )
    assert r.code == 200
    r = await client.fetch("/api/users/me/totp", "DELETE")
    assert r.code == 204
    assert [e.event for e in await events(ctx, "totp_")] == ["totp_disabled", "totp_enabled"]
    assert (await client.fetch("/api/users/me/totp", "DELETE")).code == 404
    r = await make_client().login("tess")
    assert r.code == 200 and "user" in body(r)


@pytest.mark.gen_test
async def test_form_sign_in_asks_for_the_code_then_goes_on(make_client, make_user, clock):
    _, app, codes = await enrolled(make_client, make_user, clock)
    client = make_client()
    xsrf = await client.form_xsrf("/login")
    fields = {"_xsrf": xsrf, "username": "tess", "password": PASSWORD}
    r = await client.fetch("/login?next=/chat", "POST", body=urlencode(fields), headers=FORM)
    assert r.code == 200
    page = r.body.decode()
    assert "One more step" in visible_text(page) and 'name="code"' in page
    assert "plp_session" not in client.cookies and "plp_mfa" in client.cookies
    action = re.search(r'<form method="post" action="([^"]+)" id="mfa-form"', page)[1]
    action = action.replace("&amp;", "&")
    assert action == "/login/mfa?next=%2Fchat&use=code"
    r = await client.fetch(
        action, "POST", body=urlencode({"_xsrf": xsrf, "code": "000000"}), headers=FORM
    )
    assert r.code == 400
    page = r.body.decode()
    assert 'aria-invalid="true"' in page and 'id="code-error"' in page
    assert 'aria-describedby="code-hint code-error"' in page
    r = await client.fetch(
        action, "POST", body=urlencode({"_xsrf": xsrf, "code": app.at(clock.now)}), headers=FORM
    )
    assert r.code == 302 and r.headers["Location"] == "/chat"
    assert "plp_session" in client.cookies and "plp_mfa" not in client.cookies
    # The recovery-code form, and a finished sign-in's page sends back to /login.
    other = make_client()
    xsrf = await other.form_xsrf("/login")
    fields = {"_xsrf": xsrf, "username": "tess", "password": PASSWORD}
    await other.fetch("/login", "POST", body=urlencode(fields), headers=FORM)
    r = await other.fetch("/login/mfa?use=recovery")
    assert r.code == 200 and 'name="recoveryCode"' in r.body.decode()
    r = await other.fetch(
        "/login/mfa?use=recovery",
        "POST",
        body=urlencode({"_xsrf": xsrf, "recoveryCode": codes[0]}),
        headers=FORM,
    )
    assert r.code == 302 and r.headers["Location"] == "/dashboard"
    assert (await make_client().fetch("/login/mfa")).headers.get("Location") == "/login"


@pytest.mark.gen_test
async def test_form_sign_in_after_five_wrong_codes_starts_again(make_client, make_user, clock):
    await enrolled(make_client, make_user, clock)
    client = make_client()
    xsrf = await client.form_xsrf("/login")
    fields = {"_xsrf": xsrf, "username": "tess", "password": PASSWORD}
    await client.fetch("/login", "POST", body=urlencode(fields), headers=FORM)
    for _ in range(4):
        r = await client.fetch(
            "/login/mfa", "POST", body=urlencode({"_xsrf": xsrf, "code": "1"}), headers=FORM
        )
        assert r.code == 400
    r = await client.fetch(
        "/login/mfa", "POST", body=urlencode({"_xsrf": xsrf, "code": "1"}), headers=FORM
    )
    assert r.code == 401
    assert "Too many wrong codes" in visible_text(r.body.decode())
    assert 'name="password"' in r.body.decode() and "plp_mfa" not in client.cookies


@pytest.mark.gen_test
async def test_account_page_sets_up_and_turns_off_the_app(make_client, make_user, ctx, clock):
    client = await signed_in(make_client, make_user, "tess", "teacher")
    page = (await client.fetch("/account")).body.decode()
    assert "Authenticator app" in page and 'id="totp-start"' in page
    xsrf = await client.form_xsrf("/account")
    r = await client.fetch("/account/totp", "POST", body=urlencode({"_xsrf": xsrf}), headers=FORM)
    assert r.code == 302
    page = (await client.fetch("/account")).body.decode()
    secret = re.search(r'id="totp-secret">([A-Z2-7]{32})<', page)[1]
    assert '<svg role="img"' in page
    app = pyotp.TOTP(secret)
    r = await client.fetch(
        "/account/totp/confirm", "POST", body=urlencode({"_xsrf": xsrf, "code": "1"}), headers=FORM
    )
    assert r.code == 400 and 'id="code-error"' in r.body.decode()
    r = await client.fetch(
        "/account/totp/confirm",
        "POST",
        body=urlencode({"_xsrf": xsrf, "code": app.at(clock.now)}),
        headers=FORM,
    )
    assert r.code == 200
    shown = re.findall(r"<li><code>([A-Z0-9-]{19})</code></li>", r.body.decode())
    assert len(shown) == 10
    page = (await client.fetch("/account")).body.decode()
    assert "10 recovery codes left" in visible_text(page)
    assert shown[0] not in page and secret not in page  # shown once
    clock.advance(601)
    r = await client.fetch(
        "/account/totp/off", "POST", body=urlencode({"_xsrf": xsrf}), headers=FORM
    )
    assert r.code == 200 and 'name="reauth_code"' in r.body.decode()
    wrong = {"_xsrf": xsrf, "reauth_password": PASSWORD, "reauth_code": "000000"}
    r = await client.fetch("/account/totp/off", "POST", body=urlencode(wrong), headers=FORM)
    assert r.code == 400 and 'id="reauth_code-error"' in r.body.decode()
    right = {**wrong, "reauth_code": app.at(clock.now)}
    r = await client.fetch("/account/totp/off", "POST", body=urlencode(right), headers=FORM)
    assert r.code == 302 and r.headers["Location"] == "/account?done=totp-off#totp"
    assert await ctx.db.get_totp((await ctx.db.get_credentials("tess"))[0].id) is None


@pytest.mark.gen_test
async def test_no_secret_or_code_in_logs_or_audit(make_client, make_user, ctx, clock, caplog):
    caplog.set_level(logging.DEBUG)
    client, app, codes = await enrolled(make_client, make_user, clock)
    secret = await secret_of(ctx, "tess")
    used = [app.at(clock.now), app.at(clock.now + STEP)]
    half, _ = await half_signed_in(make_client)
    pending = half.cookies["plp_mfa"]
    await finish(half, code="000000")
    await finish(half, code=used[0])
    half, _ = await half_signed_in(make_client)
    await finish(half, recoveryCode=codes[0])
    clock.advance(601)
    await client.fetch("/api/auth/reauth", "POST", json_body={"password": PASSWORD, "code": "1"})
    rows = [repr(e) for e in await events(ctx)]
    text = "\n".join([r.getMessage() for r in caplog.records] + rows)
    assert "totp_enabled" in text and "recovery_code_used" in text
    for needle in [secret, pending, *used, *codes, *(c.replace("-", "") for c in codes)]:
        assert needle not in text, needle
