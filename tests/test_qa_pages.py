"""Black-box QA of pages (SPEC §7) as a child would read them: times, devices, error pages."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PASSWORD

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)


def visible_text(page: str) -> str:
    """The text a reader sees: tags and attribute values removed."""
    return re.sub(r"<[^>]*>", " ", page)


async def signed_in(make_client, make_user, name: str, role: str = "student", **headers):
    await make_user(name, role)
    client = make_client()
    response = await client.fetch(
        "/api/auth/login",
        "POST",
        json_body={"username": name, "password": PASSWORD},
        headers=headers,
    )
    assert response.code == 200, response.body
    return client


@pytest.mark.gen_test
async def test_sessions_page_shows_friendly_times_and_device_names(make_client, make_user):
    client = await signed_in(make_client, make_user, "kim", **{"User-Agent": CHROME_LINUX})
    page = (await client.fetch("/sessions", headers={"User-Agent": CHROME_LINUX})).body.decode()
    text = visible_text(page)
    assert not ISO.search(text), "raw ISO-8601 timestamps shown"
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT[^"]+Z">', page)
    assert re.search(r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d UTC", text)
    assert "Chrome on Linux" in text
    assert "AppleWebKit" not in text  # the raw agent is only a tooltip


@pytest.mark.gen_test
async def test_admin_audit_log_shows_friendly_times(make_client, make_user):
    client = await signed_in(make_client, make_user, "root", "admin")
    page = (await client.fetch("/admin")).body.decode()
    text = visible_text(page)
    assert "login_succeeded" in text
    assert not ISO.search(text), "raw ISO-8601 timestamps shown"
    assert re.search(r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d:\d\d UTC", text)


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
