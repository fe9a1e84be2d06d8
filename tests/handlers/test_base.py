"""What every handler does (plp/handlers/base.py): HEAD like GET, 405 with `Allow`, error
pages a child can act on."""

from __future__ import annotations

import re

import pytest

from tests.support import body, signed_in, visible_text
from tests.support.headers import assert_security_headers


@pytest.mark.gen_test
async def test_head_answers_like_get_without_a_body(client, make_user):
    # Uptime monitors and load balancers probe with HEAD (RFC 9110: servers support GET+HEAD).
    health = await client.fetch("/healthz", "HEAD")
    assert health.code == 200
    assert health.body == b""
    assert health.headers["Cache-Control"] == "no-store"
    assert_security_headers(health, "HEAD /healthz")
    login = await client.fetch("/login", "HEAD")
    assert login.code == 200 and login.body == b""
    anonymous = await client.fetch("/api/users/me", "HEAD")
    assert anonymous.code == 401 and anonymous.body == b""
    page = await client.fetch("/dashboard", "HEAD")
    assert page.code == 302 and page.headers["Location"] == "/login?next=%2Fdashboard"
    await make_user("hana")
    assert (await client.login("hana")).code == 200
    me = await client.fetch("/api/users/me", "HEAD")
    assert me.code == 200 and me.body == b""
    # A route without GET still refuses HEAD.
    assert (await client.fetch("/api/auth/login", "HEAD")).code == 405
    socket = await client.fetch("/ws/chat", "HEAD")
    assert 400 <= socket.code < 500


@pytest.mark.gen_test
async def test_405_names_the_allowed_methods(client):
    logout = await client.fetch("/logout")
    assert logout.code == 405
    assert logout.headers["Allow"] == "POST"
    api = await client.fetch("/api/auth/login")
    assert api.code == 405 and body(api)["error"] == "method_not_allowed"
    assert api.headers["Allow"] == "POST"
    odd = await client.fetch("/api/users/me", "TRACE")
    assert odd.code == 405 and body(odd)["error"] == "method_not_allowed"
    assert odd.headers["Allow"] == "GET, HEAD"
    assert_security_headers(odd, "TRACE /api/users/me")


@pytest.mark.gen_test
async def test_error_pages_tell_a_child_what_to_do(client, make_client, make_user):
    logout = await client.fetch("/logout")
    assert logout.code == 405
    text = visible_text(logout.body.decode())
    message = re.search(r'id="error-message">([^<]*)<', logout.body.decode()).group(1)
    assert message != "Method Not Allowed"  # jargon: say what happened instead
    assert "Sign out" in text  # how to do what was meant
    missing = visible_text((await client.fetch("/no-such-page")).body.decode())
    assert "Check the address" in missing
    student = await signed_in(make_client, make_user, "lou")
    forbidden = await student.fetch("/admin")
    assert forbidden.code == 403
    text = visible_text(forbidden.body.decode())
    assert "ask your teacher" in text
    assert 'href="/dashboard"' in forbidden.body.decode()  # signed in: back to their page
    stale = await student.fetch("/sessions/logout-all", "POST", body="_xsrf=stale", xsrf=False)
    assert stale.code == 403
    text = visible_text(stale.body.decode())
    assert "out of date" in text and "reload" in text.lower()
