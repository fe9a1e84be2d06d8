"""Abuse limits on login and registration (SPEC §9), attacked over real HTTP.

The app's throttle and session store read the `clock` fixture, so blocks expire when the test
moves the clock, never by sleeping.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from tests.support import PASSWORD, body

WRONG = "wrong password 123"


class CountingVerify:
    """Counts bcrypt checks by calling through the app's real hasher."""

    def __init__(self, hasher) -> None:
        self.calls = 0
        self._real = hasher.verify
        hasher.verify = self

    async def __call__(self, password, stored):
        self.calls += 1
        return await self._real(password, stored)


async def audit(make_client, make_user, ip_headers=None) -> list[dict]:
    """The audit log as an admin sees it (newest first)."""
    admin = make_client()
    await make_user("auditor", "admin")
    r = await admin.login("auditor")
    assert r.code == 200, r.body
    r = await admin.fetch("/api/admin/audit?limit=500", headers=ip_headers)
    assert r.code == 200, r.body
    return body(r)["events"]


def retry_after(response) -> int:
    return int(response.headers["Retry-After"])


@pytest.mark.gen_test
async def test_account_backoff_doubles_refuses_without_check_and_resets(
    client, make_user, make_client, ctx, clock
):
    await make_user("alice")
    for _ in range(5):
        r = await client.login("alice", WRONG)
        assert r.code == 401
        assert body(r)["error"] == "invalid_credentials"
    counter = CountingVerify(ctx.hasher)
    # Blocked: even the right password gets 429, and bcrypt is not run.
    r = await client.login("alice", PASSWORD)
    assert r.code == 429
    assert body(r)["error"] == "rate_limited"
    assert retry_after(r) == 30
    assert counter.calls == 0
    # Attempts while blocked do not extend the block.
    clock.advance(29)
    r = await client.login("alice", WRONG)
    assert r.code == 429
    assert retry_after(r) == 1
    assert counter.calls == 0
    clock.advance(1)
    # Each further failure doubles the block: 60, 120, 240, 480, then capped at 900 s.
    for expected in (60, 120, 240, 480, 900, 900):
        r = await client.login("alice", WRONG)
        assert r.code == 401
        r = await client.login("alice", PASSWORD)
        assert r.code == 429
        assert retry_after(r) == expected
        clock.advance(expected)
    assert counter.calls == 6
    # Success resets the count: four more failures are not yet a block.
    r = await client.login("alice", PASSWORD)
    assert r.code == 200
    for _ in range(4):
        assert (await client.login("alice", WRONG)).code == 401
    assert (await client.login("alice", PASSWORD)).code == 200
    await ctx.audit.sync()
    events = await audit(make_client, make_user)
    # Refusals are counted in one row per address and minute (SPEC §9).
    throttled = [e for e in events if e["event"] == "login_throttled"]
    assert 1 <= len(throttled) <= 8
    assert sum(e["detail"]["count"] for e in throttled) == 8
    assert {e["detail"]["limit"] for e in throttled} == {"account"}
    assert all(e["username"] == "alice" for e in throttled)
    failed = [e for e in events if e["event"] == "login_failed" and e["username"] == "alice"]
    assert len(failed) == 5 + 6 + 4
    assert all(e["ip"] == "127.0.0.1" for e in failed)


@pytest.mark.gen_test
async def test_unknown_account_is_throttled_alike_with_the_same_401(
    client, make_user, make_client, clock
):
    await make_user("alice")
    known = await client.login("alice", WRONG)
    unknown = await client.login("ghost", WRONG)
    assert (known.code, known.body) == (unknown.code, unknown.body)
    assert body(unknown) == {
        "error": "invalid_credentials",
        "message": "Invalid username or password.",
    }
    for _ in range(4):
        assert (await client.login("ghost", WRONG)).code == 401
    r = await client.login("ghost", WRONG)
    assert r.code == 429
    assert retry_after(r) == 30
    # The block is per account: alice (one failure so far) still signs in.
    assert (await client.login("alice", PASSWORD)).code == 200
    clock.advance(30)
    assert (await client.login("ghost", WRONG)).code == 401
    r = await client.login("ghost", WRONG)
    assert retry_after(r) == 60
    events = await audit(make_client, make_user)
    ghost = [e for e in events if e["username"] == "ghost"]
    assert {e["event"] for e in ghost} == {"login_failed", "login_throttled"}
    assert all(e["userId"] is None for e in ghost)


@pytest.mark.gen_test
async def test_address_limit_blocks_every_login_until_the_window_frees(
    client, make_user, make_client, clock, ctx
):
    await make_user("alice")
    # 30 failures spread over 30 accounts (none reaches its own limit) within 5 minutes.
    for i in range(30):
        r = await client.login(f"user{i}", WRONG)
        assert r.code == 401, i
        clock.advance(5)
    # Now every login from this address is refused, right password or not, any account.
    r = await client.login("alice", PASSWORD)
    assert r.code == 429
    assert body(r)["error"] == "rate_limited"
    assert retry_after(r) == 300 - 150
    r = await make_client().login("brand-new-name", WRONG)
    assert r.code == 429
    # The window slides: once the first failure is 5 minutes old, one slot is free again.
    clock.advance(300 - 150)
    r = await client.login("alice", PASSWORD)
    assert r.code == 200
    await ctx.audit.sync()
    events = await audit(make_client, make_user)
    throttled = [e for e in events if e["event"] == "login_throttled"]
    assert {e["detail"]["limit"] for e in throttled} == {"address"}
    # Both refusals came at the same moment: one row counting two (SPEC §9).
    assert [e["detail"]["count"] for e in throttled] == [2]


@pytest.mark.gen_test
async def test_successful_logins_never_count_against_the_address(make_client, make_user):
    # A class of 40 behind one school NAT address signs in together.
    for i in range(40):
        await make_user(f"pupil{i}")
    for i in range(40):
        r = await make_client().login(f"pupil{i}", PASSWORD)
        assert r.code == 200, (i, r.body)
    # And one child repeating their login 40 times is fine too.
    again = make_client()
    for _ in range(40):
        assert (await again.login("pupil0", PASSWORD)).code == 200


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", [{"trust_proxy": True}], indirect=True)
async def test_address_limit_per_forwarded_address_with_trust_proxy(client, make_user, make_client):
    await make_user("alice")
    attacker = {"X-Forwarded-For": "203.0.113.9"}
    school = {"X-Forwarded-For": "198.51.100.7, 203.0.113.50"}  # our proxy appended the last
    for i in range(30):
        r = await client.fetch(
            "/api/auth/login",
            "POST",
            json_body={"username": f"u{i}", "password": WRONG},
            headers=attacker,
        )
        assert r.code == 401
    blocked = await client.fetch(
        "/api/auth/login",
        "POST",
        json_body={"username": "alice", "password": PASSWORD},
        headers=attacker,
    )
    assert blocked.code == 429
    ok = await make_client().fetch(
        "/api/auth/login",
        "POST",
        json_body={"username": "alice", "password": PASSWORD},
        headers=school,
    )
    assert ok.code == 200
    real_ip = await make_client().fetch(
        "/api/auth/login",
        "POST",
        json_body={"username": "alice", "password": PASSWORD},
        headers={"X-Real-IP": "192.0.2.1"},
    )
    assert real_ip.code == 200
    events = await audit(make_client, make_user, ip_headers=school)
    assert {e["ip"] for e in events if e["event"] == "login_failed"} == {"203.0.113.9"}
    assert {e["ip"] for e in events if e["event"] == "login_succeeded"} >= {
        "203.0.113.50",
        "192.0.2.1",
    }


@pytest.mark.gen_test
async def test_forged_forwarded_for_is_ignored_without_trust_proxy(
    client, make_user, make_client, clock
):
    await make_user("alice")
    for i in range(30):
        # A fresh forged address each time cannot dodge the limit on the real peer address.
        r = await client.fetch(
            "/api/auth/login",
            "POST",
            json_body={"username": f"u{i}", "password": WRONG},
            headers={"X-Forwarded-For": f"10.0.0.{i}", "X-Real-IP": f"10.1.0.{i}"},
        )
        assert r.code == 401
    r = await make_client().fetch(
        "/api/auth/login",
        "POST",
        json_body={"username": "alice", "password": PASSWORD},
        headers={"X-Forwarded-For": "10.9.9.9"},
    )
    assert r.code == 429
    clock.advance(300)  # let the auditor sign in from the same address
    events = await audit(make_client, make_user)
    assert {e["ip"] for e in events if e["event"].startswith("login_")} == {"127.0.0.1"}


@pytest.mark.gen_test
async def test_registration_limit_per_address_per_hour(make_client, clock):
    for i in range(30):
        r = await make_client().register(f"kid{i}")
        assert r.code == 201, (i, r.body)
        clock.advance(60)
    r = await make_client().register("kid30")
    assert r.code == 429
    assert body(r)["error"] == "rate_limited"
    assert retry_after(r) == 3600 - 30 * 60
    # Refused registrations do not count, and the account was not created.
    r = await make_client().login("kid30")
    assert r.code == 401
    clock.advance(3600 - 30 * 60)
    assert (await make_client().register("kid30")).code == 201


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "settings",
    [
        {
            "login_failures_per_account": 2,
            "login_failures_per_address": 4,
            "registrations_per_address": 1,
        }
    ],
    indirect=True,
)
async def test_limits_are_settings(client, make_client, make_user):
    await make_user("alice")
    await make_user("bob")
    assert (await client.login("alice", WRONG)).code == 401
    assert (await client.login("alice", WRONG)).code == 401
    r = await client.login("alice", PASSWORD)
    assert r.code == 429
    assert retry_after(r) == 30
    assert (await client.login("bob", WRONG)).code == 401
    assert (await client.login("carol", WRONG)).code == 401
    # Four failures from this address now: bob's right password is refused.
    assert (await client.login("bob", PASSWORD)).code == 429
    assert (await make_client().register("first")).code == 201
    assert (await make_client().register("second")).code == 429


async def form_login(client, username: str, password: str, **headers):
    xsrf = await client.form_xsrf("/login")
    return await client.fetch(
        "/login?next=%2Fsessions",
        "POST",
        body=urlencode({"_xsrf": xsrf, "username": username, "password": password}),
        headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
        xsrf=False,
    )


def form_error(response) -> str:
    match = re.search(r'id="form-error">([^<]*)<', response.body.decode())
    assert match, response.body.decode()[:500]
    return match.group(1)


@pytest.mark.gen_test
async def test_form_login_shares_the_limits_and_the_generic_message(
    client, make_client, make_user, clock
):
    await make_user("alice")
    # Failures through the API and the form add up on the same account.
    for _ in range(2):
        assert (await client.login("alice", WRONG)).code == 401
    for name in ("alice", "alice", "nobody"):
        r = await form_login(client, name, WRONG)
        assert r.code == 401
        assert form_error(r) == "Invalid username or password."
        assert 'value="' + name + '"' in r.body.decode()  # the username is kept, escaped
    r = await form_login(client, "alice", WRONG)
    assert r.code == 401
    r = await form_login(client, "alice", PASSWORD)
    assert r.code == 429
    assert retry_after(r) == 30
    assert "Too many failed sign-in attempts" in form_error(r)
    assert "plp_session" not in client.cookies
    clock.advance(30)
    r = await form_login(client, "alice", PASSWORD)
    assert r.code == 302
    assert r.headers["Location"] == "/sessions"
    assert "plp_session" in client.cookies
    # A form login without the XSRF field is refused before any password check.
    r = await make_client().fetch(
        "/login",
        "POST",
        body=urlencode({"username": "alice", "password": PASSWORD}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        xsrf=False,
    )
    assert r.code == 403
