"""Signed session cookies (SPEC §1, §3; plp/sessions/cookie.py): secret rotation, tampering,
foreign keys, replay; and the cache of verified cookies, which keeps every one of those rules."""

from __future__ import annotations

import base64
import secrets
import time
from email.utils import parsedate_to_datetime
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from tornado.web import create_signed_value, decode_signed_value

from plp.sessions.base import hash_token
from plp.sessions.cookie import VERIFIED_CACHE_SIZE, CookieSigner
from tests.support import PASSWORD, TEST_SECRET, Clock, body

OLD_SECRET = "old-secret-" + "o" * 40
NAME = "plp_session"


async def status_with_cookie(make_client, value: str) -> tuple[int, object]:
    client = make_client()
    client.cookies[NAME] = value
    r = await client.fetch("/api/users/me")
    return r.code, r


def cleared(response) -> bool:
    """The response clears the session cookie (empty value, expiry in the past)."""
    for header in response.headers.get_list("Set-Cookie"):
        jar = SimpleCookie()
        jar.load(header)
        morsel = jar.get(NAME)
        if morsel is not None and morsel.value == "":
            return parsedate_to_datetime(morsel["expires"]).timestamp() < time.time()
    return False


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "settings", [{"session_secret_previous": (OLD_SECRET, "older-" + "q" * 40)}], indirect=True
)
async def test_rotation_accepts_old_keys_and_reissues_with_the_current(make_client, make_user, ctx):
    alice = await make_user("alice")
    token, _ = await ctx.store.create(alice.id, ip="127.0.0.1", user_agent="t")
    old_cookie = create_signed_value(OLD_SECRET, NAME, token).decode()
    client = make_client()
    client.cookies[NAME] = old_cookie
    r = await client.fetch("/api/users/me")
    assert r.code == 200
    assert body(r)["user"]["username"] == "alice"
    reissued = client.cookies[NAME]
    assert reissued != old_cookie
    assert decode_signed_value(TEST_SECRET, NAME, reissued) == token.encode()
    assert decode_signed_value(OLD_SECRET, NAME, reissued) is None
    set_cookie = next(c for c in r.headers.get_list("Set-Cookie") if c.startswith(NAME))
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    # With the current key, no further re-issue.
    r = await client.fetch("/api/users/me")
    assert r.code == 200
    assert not any(c.startswith(NAME) for c in r.headers.get_list("Set-Cookie"))
    # The oldest key in the list works as well; an unknown key does not.
    older = create_signed_value("older-" + "q" * 40, NAME, token).decode()
    assert (await status_with_cookie(make_client, older))[0] == 200
    unknown = create_signed_value("unknown-" + "u" * 40, NAME, token).decode()
    code, r = await status_with_cookie(make_client, unknown)
    assert code == 401
    assert cleared(r)


@pytest.mark.gen_test
async def test_without_previous_keys_an_old_cookie_is_refused(make_client, make_user, ctx):
    alice = await make_user("alice")
    token, _ = await ctx.store.create(alice.id, ip="127.0.0.1", user_agent="t")
    old_cookie = create_signed_value(OLD_SECRET, NAME, token).decode()
    assert (await status_with_cookie(make_client, old_cookie))[0] == 401
    good = ctx.signer.sign(token)
    assert (await status_with_cookie(make_client, good))[0] == 200


def flip(text: str, index: int) -> str:
    ch = text[index]
    return text[:index] + ("A" if ch != "A" else "B") + text[index + 1 :]


@pytest.mark.gen_test
async def test_tampered_and_forged_cookies_are_refused(make_client, make_user, ctx):
    await make_user("alice")
    await make_user("bob")
    alice = make_client()
    assert (await alice.login("alice")).code == 200
    bob = make_client()
    assert (await bob.login("bob")).code == 200
    good = alice.cookies[NAME]
    assert (await status_with_cookie(make_client, good))[0] == 200
    parts = good.split("|")
    bob_token = ctx.signer.unsign(bob.cookies[NAME])[0]
    encoded_bob = base64.b64encode(bob_token.encode()).decode()
    forged = [
        flip(good, len(good) - 1),  # signature changed
        flip(good, len(good) - 70),  # payload changed
        "|".join(parts[:-2] + [f"{len(encoded_bob)}:{encoded_bob}", parts[-1]]),  # swap token
        "|".join(parts[:3] + [f"4:{'_xsr'}"] + parts[4:]),  # another cookie's name
        create_signed_value(TEST_SECRET, "_xsrf", bob_token).decode(),  # signed for another name
        create_signed_value("another-plp-" + "k" * 40, NAME, bob_token).decode(),  # foreign key
        create_signed_value(TEST_SECRET, NAME, bob_token, version=1).decode(),  # old format
        bob_token,  # the raw token without a signature
        secrets.token_urlsafe(32),  # an unsigned random value
        "2|" + "x" * 2000,
        "",
        "2|1:0|10:0|12:plp_session|4:YWJj|" + "0" * 64,
    ]
    for value in forged:
        code, r = await status_with_cookie(make_client, value)
        assert code == 401, value
        assert body(r)["error"] == "not_authenticated"
        assert cleared(r) or value == "", value
    # A correctly signed value whose signing time is older than the max age is refused too.
    stale = create_signed_value(
        TEST_SECRET, NAME, bob_token, clock=lambda: time.time() - ctx.settings.session_max_age - 60
    ).decode()
    assert (await status_with_cookie(make_client, stale))[0] == 401
    # Pages treat a bad cookie as signed out and clear it.
    client = make_client()
    client.cookies[NAME] = flip(good, len(good) - 1)
    r = await client.fetch("/dashboard")
    assert r.code == 302
    assert r.headers["Location"].startswith("/login")
    assert NAME not in client.cookies
    # None of this disturbed the real sessions.
    assert (await alice.fetch("/api/users/me")).code == 200
    assert (await bob.fetch("/api/users/me")).code == 200


@pytest.mark.gen_test
async def test_replay_after_logout_is_refused(make_client, make_user):
    await make_user("alice")
    for how in ("api", "page", "logout-all", "password"):
        client = make_client()
        assert (await client.login("alice")).code == 200
        saved = client.cookies[NAME]
        if how == "api":
            assert (await client.fetch("/api/auth/logout", "POST")).code == 200
        elif how == "logout-all":
            assert (await client.fetch("/api/auth/logout-all", "POST")).code == 200
        elif how == "password":
            r = await client.fetch(
                "/api/users/me/password",
                "POST",
                json_body={"currentPassword": PASSWORD, "newPassword": PASSWORD + " 2"},
            )
            assert r.code == 200
            r = await client.fetch(
                "/api/users/me/password",
                "POST",
                json_body={"currentPassword": PASSWORD + " 2", "newPassword": PASSWORD},
            )
            assert r.code == 200
        else:
            xsrf = await client.form_xsrf("/dashboard")
            r = await client.fetch(
                "/logout",
                "POST",
                body=urlencode({"_xsrf": xsrf}),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                xsrf=False,
            )
            assert r.code == 302
        code, r = await status_with_cookie(make_client, saved)
        assert code == 401, how
        r = await make_client().fetch("/dashboard", headers={"Cookie": f"{NAME}={saved}"})
        assert r.code == 302, how


def test_cached_cookie_still_expires_with_its_signature():
    clock = Clock()
    signer = CookieSigner("plp_session", "s" * 40, (), 3600.0, clock=clock)
    value = signer.sign("token-1")  # signed at real time; the clock below moves past it
    clock.now = float(value.split("|")[2].split(":")[1])
    assert signer.session_key(value) == (hash_token("token-1"), None)
    assert signer.session_key(value) == (hash_token("token-1"), None)  # from the cache
    clock.now += 3601
    assert signer.session_key(value) == (None, None)
    assert signer.session_key(value) == (None, None)  # and not cached as valid again


def test_cookie_cache_refuses_tampered_values_and_is_bounded():
    signer = CookieSigner("plp_session", "s" * 40, (), 3600.0)
    value = signer.sign("token-2")
    assert signer.session_key(value)[0] == hash_token("token-2")
    # The cache never holds a raw token, only the store key.
    assert all("token-2" not in str(entry) for entry in signer._verified.values())
    tampered = value[:-1] + ("0" if value[-1] != "0" else "1")
    assert signer.session_key(tampered) == (None, None)
    assert tampered not in signer._verified
    for i in range(VERIFIED_CACHE_SIZE + 10):
        signer.session_key(signer.sign(f"t{i}"))
    assert len(signer._verified) == VERIFIED_CACHE_SIZE
    signer.forget(signer.sign("gone"))  # forgetting an unknown value is harmless


def test_old_key_reissue_survives_the_cache():
    old = CookieSigner("plp_session", "o" * 40, (), 3600.0)
    value = old.sign("token-3")
    signer = CookieSigner("plp_session", "n" * 40, ("o" * 40,), 3600.0)
    # Old-key values are never cached: each use asks for a re-issue under the new key.
    assert signer.session_key(value) == (hash_token("token-3"), "token-3")
    assert signer.session_key(value) == (hash_token("token-3"), "token-3")
    assert value not in signer._verified
