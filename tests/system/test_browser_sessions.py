"""In real Chromium: browser A's /sessions page signs out browser B (same user, another
browser context); B's next page load lands on /login. The server log keeps no secret."""

from __future__ import annotations

import pytest

from tests.support import PageProblems

pytestmark = pytest.mark.browser

PASSWORD = "a long enough passphrase"


def sign_in(page, url: str, username: str) -> None:
    page.goto(url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/dashboard")


def test_sessions_page_signs_out_another_browser(browser, live_server):
    server = live_server()
    problems = PageProblems()
    first = browser.new_context(user_agent="Browser A (laptop)")
    a = problems.watch(first.new_page())
    a.goto(server.url + "/register")
    a.fill("input[name=username]", "devices")
    a.fill("input[name=password]", PASSWORD)
    a.click("button[type=submit]")
    a.wait_for_url(server.url + "/dashboard")
    second = browser.new_context(user_agent="Browser B (phone)")
    b = problems.watch(second.new_page())
    sign_in(b, server.url, "devices")
    b.goto(server.url + "/sessions")
    assert b.url == server.url + "/sessions"
    cookies = [c["value"] for c in first.cookies() + second.cookies()]
    assert len(cookies) == 4  # a session and an _xsrf cookie in each browser

    a.goto(server.url + "/sessions")
    rows = a.locator("#sessions tbody tr")
    assert rows.count() == 2
    mine = a.locator("#sessions tbody tr", has_text="(this device)")
    assert "Browser A (laptop)" in mine.inner_text()
    other = a.locator("#sessions tbody tr", has_text="Browser B (phone)")
    other.locator("button[type=submit]").click()
    a.wait_for_url(server.url + "/sessions?done=revoked")
    assert a.locator("#sessions tbody tr").count() == 1
    assert "(this device)" in a.inner_text("#sessions")

    # B's very next page load goes to /login; A is still signed in.
    b.reload()
    assert b.url == server.url + "/login?next=%2Fsessions"
    b.goto(server.url + "/dashboard")
    assert b.url.startswith(server.url + "/login")
    a.goto(server.url + "/dashboard")
    assert a.url == server.url + "/dashboard"

    # "Sign out everywhere" from B after signing in again ends A's session too.
    sign_in(b, server.url, "devices")
    b.goto(server.url + "/sessions")
    b.click("#logout-all")
    b.wait_for_url(server.url + "/login")
    a.goto(server.url + "/dashboard")
    assert a.url.startswith(server.url + "/login")

    first.close()
    second.close()
    assert problems.items == []
    log = server.log_text()
    assert "session_revoked" in log  # the audit line reached the server log
    assert PASSWORD not in log
    for value in cookies:
        assert value not in log
