"""End to end in real Chromium: register through the form, dashboard, sign out, refused after."""

from __future__ import annotations

import pytest

from tests.support import PageProblems

pytestmark = pytest.mark.browser


def test_register_dashboard_logout(browser, live_server):
    server = live_server()
    context = browser.new_context()
    problems = PageProblems()
    page = problems.watch(context.new_page())
    page.goto(server.url + "/register")
    page.fill("input[name=username]", "Browser.Kid")
    page.fill("input[name=displayName]", "Browser <Kid>")
    page.fill("input[name=password]", "a long enough passphrase")
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/dashboard")
    assert page.inner_text("#welcome") == "Hello, Browser <Kid>"
    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["plp_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"
    page.click("#logout")
    page.wait_for_url(server.url + "/login")
    page.goto(server.url + "/dashboard")
    assert page.url == server.url + "/login?next=%2Fdashboard"
    # The old cookie, replayed after logout, is refused too.
    replay = browser.new_context()
    replay.add_cookies([{k: session[k] for k in ("name", "value", "domain", "path")}])
    other = replay.new_page()
    other.goto(server.url + "/dashboard")
    assert other.url.startswith(server.url + "/login")
    replay.close()
    context.close()
    assert problems.items == []
