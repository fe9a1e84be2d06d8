"""Times and devices as a child reads them (plp/handlers/display.py) on the pages that show them."""

from __future__ import annotations

import re

import pytest

from tests.support import signed_in, visible_text

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)


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
    assert "login succeeded" in text
    assert not ISO.search(text), "raw ISO-8601 timestamps shown"
    assert re.search(r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d:\d\d UTC", text)
