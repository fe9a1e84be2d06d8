"""Session control by the user (SPEC §3, §6, §7): list, revoke, log out everywhere, password
change, fixation, the per-user cap, disabled users; the /sessions and /account pages."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlencode

import pytest

from tests.support import PASSWORD, body

NEW_PASSWORD = "a brand new passphrase"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def signed_in(make_client, username: str = "alice", user_agent: str = "Agent A"):
    client = make_client()
    r = await client.fetch(
        "/api/auth/login",
        "POST",
        json_body={"username": username, "password": PASSWORD},
        headers={"User-Agent": user_agent},
    )
    assert r.code == 200, r.body
    return client


def token_of(client, ctx) -> str:
    token, old_key = ctx.signer.unsign(client.cookies["plp_session"])
    assert token and not old_key
    return token


async def me(client) -> int:
    return (await client.fetch("/api/users/me")).code


async def audit(make_client, make_user) -> list[dict]:
    await make_user("auditor", "admin")
    admin = await signed_in(make_client, "auditor")
    r = await admin.fetch("/api/admin/audit?limit=500")
    assert r.code == 200
    return body(r)["events"]


async def post_form(client, path: str, fields: dict, xsrf_from: str):
    xsrf = await client.form_xsrf(xsrf_from)
    return await client.fetch(
        path, "POST", body=urlencode({"_xsrf": xsrf, **fields}), headers=FORM, xsrf=False
    )


@pytest.mark.gen_test
async def test_list_shows_handles_and_current_never_tokens(make_client, make_user, ctx):
    await make_user("alice")
    a = await signed_in(make_client, user_agent="Laptop <b>")
    b = await signed_in(make_client, user_agent="Phone")
    r = await a.fetch("/api/sessions")
    assert r.code == 200
    assert r.headers["Cache-Control"] == "no-store"
    sessions = body(r)["sessions"]
    assert len(sessions) == 2
    assert [s["current"] for s in sessions] == [True, False]
    assert [s["userAgent"] for s in sessions] == ["Laptop <b>", "Phone"]
    assert [s["method"] for s in sessions] == ["password", "password"]
    for s in sessions:
        assert set(s) == {
            "id",
            "createdAt",
            "lastSeenAt",
            "expiresAt",
            "ip",
            "userAgent",
            "method",
            "current",
        }
        assert s["ip"] == "127.0.0.1"
        assert s["createdAt"].endswith("Z") and s["expiresAt"] > s["lastSeenAt"]
    text = r.body.decode()
    for client in (a, b):
        token = token_of(client, ctx)
        for secret in (
            token,
            hashlib.sha256(token.encode()).hexdigest(),
            client.cookies["plp_session"],
        ):
            assert secret not in text
            assert secret[:16] not in text
    # B sees the same two, with its own marked current.
    r = await b.fetch("/api/sessions")
    assert [s["current"] for s in body(r)["sessions"]] == [False, True]
    assert (await make_client().fetch("/api/sessions")).code == 401


@pytest.mark.gen_test
async def test_revoke_own_session_and_not_anyone_elses(make_client, make_user):
    await make_user("alice")
    await make_user("mallory")
    a = await signed_in(make_client)
    b = await signed_in(make_client)
    m = await signed_in(make_client, "mallory")
    sessions = body(await a.fetch("/api/sessions"))["sessions"]
    b_handle = next(s["id"] for s in sessions if not s["current"])
    m_handle = body(await m.fetch("/api/sessions"))["sessions"][0]["id"]
    # Another user's handle is simply not found, and that session lives on.
    r = await a.fetch(f"/api/sessions/{m_handle}", "DELETE")
    assert r.code == 404
    assert body(r)["error"] == "not_found"
    r = await m.fetch(f"/api/sessions/{b_handle}", "DELETE")
    assert r.code == 404
    assert await me(m) == 200 and await me(b) == 200
    for bad in ("nope", "x" * 300, "%00", "..%2F"):
        assert (await a.fetch(f"/api/sessions/{bad}", "DELETE")).code == 404
    r = await a.fetch(f"/api/sessions/{b_handle}", "DELETE")
    assert r.code == 204
    assert r.body == b""
    r = await b.fetch("/api/users/me")
    assert r.code == 401
    assert body(r)["error"] == "not_authenticated"
    assert await me(a) == 200
    assert (await a.fetch(f"/api/sessions/{b_handle}", "DELETE")).code == 404
    # Without the XSRF header the delete is refused.
    r = await a.fetch(f"/api/sessions/{b_handle}", "DELETE", xsrf=False)
    assert r.code == 403
    assert body(r)["error"] == "xsrf"
    events = await audit(make_client, make_user)
    revoked = [e for e in events if e["event"] == "session_revoked"]
    assert len(revoked) == 1
    assert revoked[0]["username"] == "alice"
    assert revoked[0]["detail"] == {"by": "self"}
    assert any(e["event"] == "xsrf_rejected" for e in events)


@pytest.mark.gen_test
async def test_logout_all_ends_every_session(make_client, make_user):
    await make_user("alice")
    clients = [await signed_in(make_client) for _ in range(3)]
    r = await clients[0].fetch("/api/auth/logout-all", "POST")
    assert r.code == 200
    assert body(r) == {"ok": True, "ended": 3}
    assert r.headers["Clear-Site-Data"] == '"cookies", "storage"'
    for client in clients:
        assert await me(client) == 401
    assert (await clients[1].fetch("/api/auth/logout-all", "POST")).code == 401
    events = await audit(make_client, make_user)
    assert [e["detail"] for e in events if e["event"] == "logout_all"] == [{"sessions": 3}]


@pytest.mark.gen_test
async def test_password_change(make_client, make_user, ctx):
    await make_user("alice")
    a = await signed_in(make_client)
    b = await signed_in(make_client)
    old_cookie = a.cookies["plp_session"]
    # Input problems: 400 naming the field.
    for payload, name in (
        ({"newPassword": NEW_PASSWORD}, "currentPassword"),
        ({"currentPassword": 5, "newPassword": NEW_PASSWORD}, "currentPassword"),
        ({"currentPassword": PASSWORD, "newPassword": "short"}, "newPassword"),
        ({"currentPassword": PASSWORD, "newPassword": "password123"}, "newPassword"),
        ({"currentPassword": PASSWORD}, "newPassword"),
    ):
        r = await a.fetch("/api/users/me/password", "POST", json_body=payload)
        assert r.code == 400, payload
        assert body(r)["error"] == "bad_request"
        assert name in body(r)["fields"], payload
    r = await a.fetch(
        "/api/users/me/password",
        "POST",
        json_body={"currentPassword": "not my password", "newPassword": NEW_PASSWORD},
    )
    assert r.code == 400
    assert body(r)["fields"] == {"currentPassword": "The current password is not correct."}
    assert await me(a) == 200 and await me(b) == 200
    r = await a.fetch(
        "/api/users/me/password",
        "POST",
        json_body={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD},
    )
    assert r.code == 200
    assert body(r) == {"ok": True}
    new_cookie = a.cookies["plp_session"]
    assert new_cookie != old_cookie
    assert await me(a) == 200
    assert await me(b) == 401  # the other session ended
    stale = make_client()
    stale.cookies["plp_session"] = old_cookie
    assert await me(stale) == 401  # the old token of this very browser too
    assert (await make_client().login("alice", PASSWORD)).code == 401
    assert (await make_client().login("alice", NEW_PASSWORD)).code == 200
    events = await audit(make_client, make_user)
    names = [e["event"] for e in events if e["username"] == "alice"]
    assert "password_changed" in names
    failed = [e for e in events if e["event"] == "login_failed"]
    # Oldest last: the wrong current password, then the old password after the change.
    assert [e["detail"] for e in failed] == [{"known": True}, {"during": "password_change"}]


@pytest.mark.gen_test
async def test_wrong_current_password_counts_as_a_failed_login(make_client, make_user, clock, ctx):
    await make_user("alice")
    thief = await signed_in(make_client)  # a stolen session guessing the password
    for _ in range(5):
        r = await thief.fetch(
            "/api/users/me/password",
            "POST",
            json_body={"currentPassword": "guess guess guess", "newPassword": NEW_PASSWORD},
        )
        assert r.code == 400
    r = await thief.fetch(
        "/api/users/me/password",
        "POST",
        json_body={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD},
    )
    assert r.code == 429
    assert r.headers["Retry-After"] == "30"
    assert (await make_client().login("alice", PASSWORD)).code == 429
    clock.advance(30)
    assert (await make_client().login("alice", PASSWORD)).code == 200
    await ctx.audit.sync()  # both refusals are one row with a count (SPEC §9)
    events = await audit(make_client, make_user)
    throttled = [e for e in events if e["event"] == "login_throttled"]
    assert [e["detail"] for e in throttled] == [
        {"limit": "account", "during": "password_change", "count": 2},
    ]


@pytest.mark.gen_test
async def test_login_ends_the_session_the_request_carried(make_client, make_user, ctx):
    await make_user("alice")
    await make_user("mallory")
    # Mallory plants her own signed-in cookie in a shared browser ...
    browser = await signed_in(make_client, "mallory")
    planted = browser.cookies["plp_session"]
    # ... and Alice signs in there: she gets a new token, Mallory's session is over.
    r = await browser.login("alice", PASSWORD)
    assert r.code == 200
    assert browser.cookies["plp_session"] != planted
    assert token_of(browser, ctx) != ctx.signer.unsign(planted)[0]
    mallory = make_client()
    mallory.cookies["plp_session"] = planted
    assert await me(mallory) == 401
    r = await browser.fetch("/api/users/me")
    assert body(r)["user"]["username"] == "alice"
    # Signing in again as the same user also replaces the token.
    before = browser.cookies["plp_session"]
    assert (await browser.login("alice", PASSWORD)).code == 200
    stale = make_client()
    stale.cookies["plp_session"] = before
    assert await me(stale) == 401
    assert len(body(await browser.fetch("/api/sessions"))["sessions"]) == 1


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", [{"sessions_per_user": 3}], indirect=True)
async def test_sessions_per_user_cap_ends_the_oldest(make_client, make_user, clock):
    await make_user("alice")
    clients = []
    for _ in range(4):
        clients.append(await signed_in(make_client))
        clock.advance(1)
    assert await me(clients[0]) == 401
    for client in clients[1:]:
        assert await me(client) == 200
    assert len(body(await clients[3].fetch("/api/sessions"))["sessions"]) == 3


@pytest.mark.gen_test
async def test_disabled_user_is_refused_on_the_next_request(make_client, make_user, ctx):
    alice = await make_user("alice")
    a = await signed_in(make_client)
    # Straight in the database, as another process would: no session was ended for it.
    await ctx.db.update_user(alice.id, disabled=True)
    assert await me(a) == 401
    assert "plp_session" not in a.cookies  # the cookie was cleared
    assert await ctx.store.list_for_user(alice.id) == []
    r = await make_client().login("alice", PASSWORD)
    assert r.code == 403
    assert body(r)["error"] == "account_disabled"


@pytest.mark.gen_test
async def test_idle_and_absolute_expiry_refuse_at_once(make_client, make_user, clock, ctx):
    await make_user("alice")
    a = await signed_in(make_client)
    idle = ctx.settings.session_idle_timeout
    clock.advance(idle - 10)
    assert await me(a) == 200  # activity pushes the idle deadline back
    clock.advance(idle - 10)
    assert await me(a) == 200
    clock.advance(idle)
    assert await me(a) == 401
    b = await signed_in(make_client)
    for _ in range(int(ctx.settings.session_max_age // (idle / 2))):
        clock.advance(idle / 2)
        if await me(b) == 401:
            break
    assert await me(b) == 401
    assert clock.now  # the loop above ended by the absolute limit, not by idling


@pytest.mark.gen_test
async def test_sessions_page_revoke_and_logout_all(make_client, make_user):
    await make_user("alice")
    await make_user("bob")
    r = await make_client().fetch("/sessions")
    assert r.code == 302
    assert r.headers["Location"] == "/login?next=%2Fsessions"
    a = await signed_in(make_client, user_agent="Browser <A>")
    b = await signed_in(make_client, user_agent="Browser B")
    bob = await signed_in(make_client, "bob")
    page = await a.fetch("/sessions")
    assert page.code == 200
    assert page.headers["Cache-Control"] == "no-store"
    html = page.body.decode()
    assert "Browser &lt;A&gt;" in html and "<A>" not in html
    handles = re.findall(r'data-session="([^"]+)"', html)
    assert len(handles) == 2
    assert html.count("(this device)") == 1
    bob_handle = body(await bob.fetch("/api/sessions"))["sessions"][0]["id"]
    # Revoking someone else's handle through the form does nothing.
    r = await post_form(a, "/sessions/revoke", {"session": bob_handle}, "/sessions")
    assert r.code == 302
    assert await me(bob) == 200
    # Revoke B from A's page.
    r = await post_form(a, "/sessions/revoke", {"session": handles[1]}, "/sessions")
    assert r.code == 302
    assert r.headers["Location"] == "/sessions?done=revoked"
    assert await me(b) == 401
    assert await me(a) == 200
    page = await a.fetch("/sessions?done=revoked")
    assert "That session has been signed out." in page.body.decode()
    # The form without its XSRF field is refused.
    r = await a.fetch(
        "/sessions/revoke",
        "POST",
        body=urlencode({"session": handles[0]}),
        headers=FORM,
        xsrf=False,
    )
    assert r.code == 403
    assert await me(a) == 200
    # Revoking this device signs it out and goes to /login.
    c = await signed_in(make_client)
    own = body(await c.fetch("/api/sessions"))["sessions"]
    own_handle = next(s["id"] for s in own if s["current"])
    r = await post_form(c, "/sessions/revoke", {"session": own_handle}, "/sessions")
    assert r.headers["Location"] == "/login"
    assert "plp_session" not in c.cookies
    # Sign out everywhere.
    r = await post_form(a, "/sessions/logout-all", {}, "/sessions")
    assert r.code == 302
    assert r.headers["Location"] == "/login"
    assert r.headers["Clear-Site-Data"] == '"cookies", "storage"'
    assert await me(a) == 401
    assert await me(bob) == 200


@pytest.mark.gen_test
async def test_account_page_changes_the_password(make_client, make_user):
    await make_user("alice")
    r = await make_client().fetch("/account")
    assert r.headers["Location"] == "/login?next=%2Faccount"
    a = await signed_in(make_client)
    b = await signed_in(make_client)
    page = await a.fetch("/account")
    assert page.code == 200
    assert page.headers["Cache-Control"] == "no-store"
    fields = {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
    r = await post_form(a, "/account", {**fields, "confirmPassword": "something else"}, "/account")
    assert r.code == 400
    assert "The new passwords do not match." in r.body.decode()
    r = await post_form(
        a,
        "/account",
        {
            "currentPassword": "wrong wrong",
            "newPassword": NEW_PASSWORD,
            "confirmPassword": NEW_PASSWORD,
        },
        "/account",
    )
    assert r.code == 400
    assert "The current password is not correct." in r.body.decode()
    assert NEW_PASSWORD not in r.body.decode()  # passwords are never echoed back
    old_cookie = a.cookies["plp_session"]
    r = await post_form(a, "/account", {**fields, "confirmPassword": NEW_PASSWORD}, "/account")
    assert r.code == 302
    assert r.headers["Location"] == "/account?done=password"
    assert a.cookies["plp_session"] != old_cookie
    assert await me(a) == 200
    assert await me(b) == 401
    page = await a.fetch("/account?done=password")
    assert "Password changed." in page.body.decode()
    r = await a.fetch("/account", "POST", body=urlencode(fields), headers=FORM, xsrf=False)
    assert r.code == 403


@pytest.mark.gen_test
async def test_login_next_is_never_an_open_redirect(make_client, make_user):
    await make_user("alice")
    evil = [
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/\r\nSet-Cookie: x=1",
        "\\\\evil.example",
        "evil.example",
        "/\tevil",
    ]
    for target in evil + ["/sessions?x=1"]:
        client = make_client()
        xsrf = await client.form_xsrf("/login")
        r = await client.fetch(
            "/login?" + urlencode({"next": target}),
            "POST",
            body=urlencode({"_xsrf": xsrf, "username": "alice", "password": PASSWORD}),
            headers=FORM,
            xsrf=False,
        )
        assert r.code == 302, target
        location = r.headers["Location"]
        expected = "/sessions?x=1" if target.startswith("/sessions") else "/dashboard"
        assert location == expected, (target, location)
