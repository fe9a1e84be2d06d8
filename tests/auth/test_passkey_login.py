"""Signing in with a passkey and reauth with one (SPEC §14), with a software authenticator:
no username, and every way an assertion can be wrong (origin, RP ID, UV, challenge replayed
or expired, another user's credential, a sign count going backwards, malformed input); the
refusals set no session cookie, are audited and feed the address limit."""

from __future__ import annotations

import json

import pytest

from tests.support import body, signed_in
from tests.support.authenticator import b64url
from tests.support.passkeys import (
    authenticator,
    broken,
    creation_options,
    events,
    no_session_cookie,
    passkey_login,
    pupil_with_passkey,
    request_options,
)

WINDOW = 600.0  # the default reauth-window
TTL = 300.0  # challenges live 5 minutes


@pytest.mark.gen_test
async def test_sign_in_without_a_username(make_client, make_user, base_url, ctx):
    _owner, auth, cred = await pupil_with_passkey(make_client, make_user, base_url)
    client = make_client()
    options = await request_options(client)
    assert "allowCredentials" not in options or options["allowCredentials"] == []
    assert options["userVerification"] == "required"
    assert any(k.endswith("plp_passkey") for k in client.cookies)
    r = await client.fetch(
        "/api/auth/login/passkey", "POST", json_body={"credential": auth.get(options, cred)}
    )
    assert r.code == 200, r.body
    assert body(r)["user"]["username"] == "pupil"
    sessions = body(await client.fetch("/api/sessions"))["sessions"]
    assert [s["method"] for s in sessions if s["current"]] == ["passkey"]
    listed = body(await client.fetch("/api/users/me/passkeys"))["passkeys"]
    assert listed[0]["lastUsedAt"] is not None
    ok = await events(ctx, "login_succeeded")
    assert ok[0].detail.get("method") == "passkey" and ok[0].username == "pupil"
    # A second sign-in with the next counter value works too.
    assert (await passkey_login(make_client(), auth, cred)).code == 200


REFUSALS = [
    ("wrong origin", {"origin": "https://evil.example"}),
    ("wrong RP ID", {"rp_id": "evil.example"}),
    ("UV flag missing", {"uv": False}),
    ("wrong challenge", {"challenge": b64url(b"x" * 64)}),
]


@pytest.mark.gen_test
@pytest.mark.parametrize("why,change", REFUSALS, ids=[r[0] for r in REFUSALS])
async def test_refused_assertions(make_client, make_user, base_url, ctx, why, change):
    _owner, auth, cred = await pupil_with_passkey(make_client, make_user, base_url)
    client = make_client()
    r = await passkey_login(client, auth, cred, **change)
    assert r.code == 401, r.body
    assert body(r)["error"] == "invalid_credentials"
    assert no_session_cookie(r)
    assert (await client.fetch("/api/users/me")).code == 401
    failed = await events(ctx, "login_failed")
    assert failed and failed[0].detail["method"] == "passkey"
    assert failed[0].detail["reason"] == "not_verified"
    # The refusal left the stored counter alone: the real authenticator still signs in.
    assert (await passkey_login(make_client(), auth, cred)).code == 200


@pytest.mark.gen_test
async def test_a_challenge_is_single_use(make_client, make_user, base_url):
    _owner, auth, cred = await pupil_with_passkey(make_client, make_user, base_url)
    client = make_client()
    options = await request_options(client)
    cookies = dict(client.cookies)
    r = await client.fetch(
        "/api/auth/login/passkey", "POST", json_body={"credential": auth.get(options, cred)}
    )
    assert r.code == 200
    # The same challenge again, with the sign-in cookie put back and a fresh signature.
    thief = make_client()
    thief.cookies = {k: v for k, v in cookies.items() if "session" not in k}
    r = await thief.fetch(
        "/api/auth/login/passkey", "POST", json_body={"credential": auth.get(options, cred)}
    )
    assert r.code == 400 and body(r)["error"] == "bad_request"
    assert no_session_cookie(r)
    # Without the cookie at all (a challenge in the body is never accepted).
    r = await make_client().fetch(
        "/api/auth/login/passkey", "POST", json_body={"credential": auth.get(options, cred)}
    )
    assert r.code == 400 and no_session_cookie(r)


@pytest.mark.gen_test
async def test_a_challenge_expires_after_five_minutes(make_client, make_user, base_url, clock):
    _owner, auth, cred = await pupil_with_passkey(make_client, make_user, base_url)
    client = make_client()
    options = await request_options(client)
    clock.advance(TTL + 1)
    r = await client.fetch(
        "/api/auth/login/passkey", "POST", json_body={"credential": auth.get(options, cred)}
    )
    assert r.code == 400 and "expired" in body(r)["message"]
    assert no_session_cookie(r)
    # Registration challenges expire the same way.
    owner = await signed_in(make_client, make_user, "other")
    options = await creation_options(owner)
    clock.advance(TTL + 1)
    credential, _ = auth.create(options)
    r = await owner.fetch("/api/users/me/passkeys", "POST", json_body={"credential": credential})
    assert r.code == 400 and body(r)["error"] == "bad_request"


@pytest.mark.gen_test
async def test_a_credential_of_another_user(make_client, make_user, base_url, ctx):
    _a, auth_a, cred_a = await pupil_with_passkey(make_client, make_user, base_url, "alice")
    _b, _auth_b, cred_b = await pupil_with_passkey(make_client, make_user, base_url, "bob")
    # Alice's key, claiming to be Bob (his user handle): refused.
    r = await passkey_login(make_client(), auth_a, cred_a, user_handle=cred_b.user_handle)
    assert r.code == 401 and no_session_cookie(r)
    failed = await events(ctx, "login_failed")
    assert failed[0].detail["reason"] == "user_handle_mismatch"
    # Bob cannot register Alice's credential as his own.
    bob = await signed_in(make_client, make_user, "bobby")
    options = await creation_options(bob)
    credential, _ = authenticator(base_url).create(options, reuse=cred_a)
    r = await bob.fetch("/api/users/me/passkeys", "POST", json_body={"credential": credential})
    assert r.code == 409 and body(r)["error"] == "conflict"
    assert body(await bob.fetch("/api/users/me/passkeys"))["passkeys"] == []
    # A credential the server never saw.
    stranger = authenticator(base_url)
    _, unknown = stranger.create(await creation_options(bob))
    r = await passkey_login(make_client(), stranger, unknown)
    assert r.code == 401
    assert (await events(ctx, "login_failed"))[0].detail["reason"] == "unknown_credential"


@pytest.mark.gen_test
async def test_a_sign_count_that_goes_backwards(make_client, make_user, base_url, ctx):
    _owner, auth, cred = await pupil_with_passkey(make_client, make_user, base_url)
    assert (await passkey_login(make_client(), auth, cred, count=5)).code == 200
    r = await passkey_login(make_client(), auth, cred, count=3)
    assert r.code == 401 and no_session_cookie(r)
    r = await passkey_login(make_client(), auth, cred, count=5)  # equal is not an increase
    assert r.code == 401
    assert (await passkey_login(make_client(), auth, cred, count=6)).code == 200


@pytest.mark.gen_test
async def test_a_disabled_account_cannot_sign_in(make_client, make_user, base_url, ctx):
    _owner, auth, cred = await pupil_with_passkey(make_client, make_user, base_url)
    user = (await ctx.db.get_credentials("pupil"))[0]
    await ctx.db.update_user(user.id, disabled=True)
    r = await passkey_login(make_client(), auth, cred)
    assert r.code == 403 and body(r)["error"] == "account_disabled"
    assert no_session_cookie(r)


@pytest.mark.gen_test
async def test_reauth_with_a_passkey(make_client, make_user, base_url, ctx, clock):
    client, auth, cred = await pupil_with_passkey(make_client, make_user, base_url)
    _other, other_auth, other_cred = await pupil_with_passkey(
        make_client, make_user, base_url, "other"
    )
    clock.advance(WINDOW + 1)
    r = await client.fetch("/api/auth/reauth/passkey/options", "POST")
    options = body(r)
    assert [c["id"] for c in options["allowCredentials"]] == [cred.id_text]
    # Someone else's passkey does not prove this user.
    r = await client.fetch(
        "/api/auth/reauth", "POST", json_body={"credential": other_auth.get(options, other_cred)}
    )
    assert r.code == 400 and body(r)["fields"]["credential"]
    assert (await events(ctx, "reauth_failed"))[0].detail["method"] == "passkey"
    # The challenge was spent by that try; new options, own passkey: renewed, same cookie.
    session_cookie = client.cookies["plp_session"]
    options = body(await client.fetch("/api/auth/reauth/passkey/options", "POST"))
    r = await client.fetch(
        "/api/auth/reauth", "POST", json_body={"credential": auth.get(options, cred)}
    )
    assert r.code == 200 and body(r) == {"ok": True}
    assert client.cookies["plp_session"] == session_cookie
    ok = await events(ctx, "reauth_succeeded")
    assert ok[0].detail["method"] == "passkey"
    passkey_id = body(await client.fetch("/api/users/me/passkeys"))["passkeys"][0]["id"]
    assert (await client.fetch(f"/api/users/me/passkeys/{passkey_id}", "DELETE")).code == 204
    # A reauth assertion with no options asked for on this session.
    r = await client.fetch(
        "/api/auth/reauth", "POST", json_body={"credential": auth.get(options, cred)}
    )
    assert r.code == 400


BAD_SIGN_INS = [
    ("no credential", lambda a: {}),
    ("credential a number", lambda a: {"credential": 5}),
    ("credential empty", lambda a: {"credential": {}}),
    ("garbage base64", lambda a: {"credential": broken(a, "response.signature", "%%%")}),
    ("user handle a number", lambda a: {"credential": broken(a, "response.userHandle", 3)}),
    ("user handle odd base64", lambda a: {"credential": broken(a, "response.userHandle", "a")}),
    (
        "authenticator data short",
        lambda a: {"credential": broken(a, "response.authenticatorData", "AAAA")},
    ),
    ("rawId garbage", lambda a: {"credential": broken(a, "rawId", "***")}),
    ("client data not JSON", lambda a: {"credential": broken(a, "response.clientDataJSON", "bm9")}),
    ("signature garbage", lambda a: {"credential": broken(a, "response.signature", "AAAA")}),
]


@pytest.mark.gen_test
@pytest.mark.parametrize("why,make", BAD_SIGN_INS, ids=[b[0] for b in BAD_SIGN_INS])
async def test_bad_sign_in_input(make_client, make_user, base_url, why, make):
    _owner, auth, cred = await pupil_with_passkey(make_client, make_user, base_url)
    client = make_client()
    assertion = auth.get(await request_options(client), cred)
    r = await client.fetch("/api/auth/login/passkey", "POST", json_body=make(assertion))
    assert r.code in (400, 401), (why, r.body)
    assert body(r)["error"] in ("bad_request", "invalid_credentials")
    assert no_session_cookie(r)
    # Malformed JSON bodies too.
    for raw in (b"{", b"[]", b'"x"'):
        r = await client.fetch(
            "/api/auth/login/passkey",
            "POST",
            body=raw,
            headers={"Content-Type": "application/json"},
        )
        assert r.code == 400


@pytest.mark.gen_test
async def test_failed_passkey_sign_ins_feed_the_address_limit(
    make_client, make_user, base_url, ctx
):
    _owner, auth, cred = await pupil_with_passkey(make_client, make_user, base_url)
    for _ in range(ctx.settings.login_failures_per_account):
        r = await passkey_login(make_client(), auth, cred, origin="https://evil.example")
        assert r.code == 401
    r = await passkey_login(make_client(), auth, cred)
    assert r.code == 429 and "Retry-After" in r.headers
    assert no_session_cookie(r)
    # A password sign-in from the same address is not blocked by it (below the address cap).
    assert (await make_client().login("pupil")).code == 200


@pytest.mark.gen_test
async def test_no_challenge_or_credential_in_logs_or_audit(
    make_client, make_user, base_url, ctx, caplog
):
    _owner, auth, cred = await pupil_with_passkey(make_client, make_user, base_url)
    caplog.set_level("DEBUG")
    secrets_sent = []
    for change in ({}, {"origin": "https://evil.example"}):
        client = make_client()
        options = await request_options(client)
        assertion = auth.get(options, cred, **change)
        response = assertion["response"]
        secrets_sent += [options["challenge"], cred.id_text, response["signature"]]
        secrets_sent += [response["clientDataJSON"], response["authenticatorData"]]
        secrets_sent += [v for k, v in client.cookies.items() if "passkey" in k]
        await client.fetch("/api/auth/login/passkey", "POST", json_body={"credential": assertion})
    await ctx.audit.sync()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    stored = json.dumps([(e.event, e.detail) for e in await ctx.db.list_audit(200)])
    assert "login_failed" in stored and "login_succeeded" in stored
    for secret in secrets_sent:
        assert secret not in logged and secret not in stored


@pytest.mark.gen_test
async def test_sign_in_challenges_are_limited_per_address(make_client, ctx, clock):
    # Anyone may ask; each challenge is kept 5 minutes in a bounded store, so one address
    # gets at most 60 a minute (plp/throttle.py).
    client = make_client()
    for _ in range(60):
        await request_options(client)
    r = await client.fetch("/api/auth/login/passkey/options", "POST")
    assert r.code == 429
    assert body(r)["error"] == "rate_limited"
    assert 0 < int(r.headers["Retry-After"]) <= 60
    assert not any("plp_passkey" in h for h in r.headers.get_list("Set-Cookie"))
    throttled = await events(ctx, "login_throttled")
    assert throttled[-1].detail == {"limit": "challenges", "method": "passkey"}
    clock.advance(60)
    await request_options(client)  # the minute has passed
