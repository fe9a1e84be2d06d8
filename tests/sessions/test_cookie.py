"""Signing secrets and cookies (SPEC §1, §3): rotation, tampering, foreign keys, replay; and
log hygiene (SPEC §3, §11) over every log record and audit row of the test session."""

from __future__ import annotations

import base64
import logging
import secrets
import time
from email.utils import parsedate_to_datetime
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from tornado.web import create_signed_value, decode_signed_value

from tests.conftest import PASSWORD, TEST_SECRET, body
from tests.conftest_audit import HYGIENE, find_leaks, harvest

OLD_SECRET = "old-secret-" + "o" * 40
NAME = "plp_session"


@pytest.fixture
def settings(settings, request):
    return settings.replace(**getattr(request, "param", {}))


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


@pytest.mark.gen_test
async def test_scanner_catches_planted_values(ctx, io_loop):
    planted = "planted-" + secrets.token_hex(16)
    assert not find_leaks({planted: "planted"}, HYGIENE.records)
    logging.getLogger("plp.somewhere").warning("oops, leaked %s here", planted)
    leaks = find_leaks({planted: "planted"}, HYGIENE.records)
    assert len(leaks) == 1 and "plp.somewhere" in leaks[0]
    # Through the audit trail: a detail value is kept (and found), a secret-named key dropped.
    other = "planted-" + secrets.token_hex(16)
    await ctx.audit.record("logout", username="x", note=other)
    await ctx.audit.record("logout", username="x", password_hash=planted + "-dropped")
    rows = [str(e.to_json()) for e in await ctx.db.list_audit(10)]
    assert find_leaks({other: "planted"}, rows)
    assert not find_leaks({planted + "-dropped": "planted"}, rows)
    # Secrets nobody registered are still caught by their shape.
    assert find_leaks({}, ["cookie 2|1:0|10:1700000000|11:plp_session|4:YWJj|ab"])
    assert find_leaks({}, ["hash $2b$04$" + "a" * 53])
    assert not find_leaks({}, ["an ordinary line 2|3 with $2 in it"])
    # Throw away the planted audit rows so the session-wide check does not see them.
    HYGIENE.records[:] = [r for r in HYGIENE.records if planted not in r]


@pytest.mark.gen_test
async def test_session_log_hygiene(make_client, make_user, ctx, clock):
    """Runs after every other in-process test (see tests/conftest_audit.py)."""
    # An attack scenario of its own, so the check means something even when run alone.
    await make_user("victim")
    await make_user("boss", "admin")
    attacker = make_client()
    for guess in ("letmein12", "password1!", "victim2024", "qwertyuiop", "iloveyou99", "x" * 300):
        await attacker.login("victim", guess)
    await attacker.login("victim", PASSWORD)  # throttled
    await attacker.fetch("/api/auth/login", "POST", json_body={"username": "victim"}, xsrf=False)
    clock.advance(3600)
    user = make_client()
    assert (await user.login("victim")).code == 200
    await user.fetch(
        "/api/users/me/password",
        "POST",
        json_body={"currentPassword": "bad guess here", "newPassword": "next secret words"},
    )
    await user.fetch(
        "/api/users/me/password",
        "POST",
        json_body={"currentPassword": PASSWORD, "newPassword": "next secret words"},
    )
    cookie = user.cookies[NAME]
    await make_client().fetch("/api/users/me", headers={"Cookie": f"{NAME}={cookie}x"})
    await make_client().fetch(f"/login?next=/x&password={PASSWORD}")
    await make_client().register("newkid", password="brand new kid password")
    await user.fetch("/api/auth/logout", "POST")
    await make_client().fetch("/api/users/me", headers={"Cookie": f"{NAME}={cookie}"})
    boss = make_client()
    await boss.login("boss")
    await boss.fetch("/api/admin/audit")
    await harvest(ctx, "test_session_log_hygiene")

    kinds = {kind.split(" (")[0] for kind in HYGIENE.secrets.values()}
    assert {"password", "session token", "session token hash", "session cookie"} <= kinds
    assert {"password hash", "bcrypt hash"} <= kinds
    assert len(HYGIENE.records) > 20 and len(HYGIENE.audit_rows) > 10
    assert any("plp.audit" in r for r in HYGIENE.records)
    assert any("plp.access" in r for r in HYGIENE.records)
    leaks = find_leaks(HYGIENE.secrets, HYGIENE.records + HYGIENE.audit_rows)
    assert not leaks, "\n".join(leaks[:20])
