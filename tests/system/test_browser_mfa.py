"""The authenticator app in real Chromium (SPEC §7, §14): set it up on /account from the QR
page's key, see the recovery codes once, sign in with a code and with a recovery code, and turn
it off through the inline "Confirm it is you" with a code; every new page state has no serious
axe violation and no sideways scrolling at 390×844, in the light and the dark theme."""

from __future__ import annotations

import time

import pyotp
import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.support.client import PASSWORD
from tests.support.tour import VIEWPORTS, create_user, overflow

pytestmark = pytest.mark.browser

SERIOUS = ("serious", "critical")


def problems(page) -> list[str]:
    """Serious axe violations and sideways overflow of the page as it is now."""
    found = [
        f"{v['id']}: {n['target']}"
        for v in Axe().run(page).response["violations"]
        if v.get("impact") in SERIOUS
        for n in v["nodes"]
    ]
    if overflow(page) > 0:
        found.append(f"scrolls sideways by {overflow(page)} px")
    return found


def sign_in_with_password(page, url: str) -> None:
    page.goto(url + "/login")
    page.fill("#username", "teach")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("load")


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_set_up_sign_in_and_turn_off_in_a_browser(browser, live_server, dark):
    # A 1-second window, so turning the app off asks to confirm it is you.
    server = live_server(env={"PLP_REAUTH_WINDOW": "1"})
    create_user(server, "teach", "teacher")
    context = browser.new_context(
        viewport=VIEWPORTS["phone"], color_scheme="dark" if dark else "light"
    )
    page = context.new_page()
    seen: dict[str, list[str]] = {}
    sign_in_with_password(page, server.url)
    page.goto(server.url + "/account")
    page.click("#totp-start")
    page.wait_for_selector("#totp-qr svg")
    seen["setup"] = problems(page)
    app = pyotp.TOTP(page.text_content("#totp-secret").strip())
    page.fill("#code", "000000" if app.now() != "000000" else "111111")
    page.click("#totp-confirm")
    page.wait_for_selector("#code-error")
    seen["setup-error"] = problems(page)
    assert page.get_attribute("#code", "aria-invalid") == "true"
    page.fill("#code", app.now())
    page.click("#totp-confirm")
    page.wait_for_selector("#recovery-codes")
    seen["codes"] = problems(page)
    codes = [c.strip() for c in page.locator("#recovery-codes code").all_text_contents()]
    assert len(codes) == 10
    page.click("#logout")
    page.wait_for_url(server.url + "/login")
    # Sign in again: the password, then a recovery code (the confirming code is used up).
    sign_in_with_password(page, server.url)
    page.wait_for_selector("#code")
    seen["login-code"] = problems(page)
    page.click("text=Use a recovery code instead")
    page.wait_for_selector("#recoveryCode")
    seen["login-recovery"] = problems(page)
    page.fill("#recoveryCode", codes[0].lower())
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/dashboard")
    page.goto(server.url + "/account")
    seen["on"] = problems(page)
    assert "9 recovery codes left" in page.text_content("#totp-state")
    time.sleep(1.1)  # let the 1-second reauth window pass (the server's real clock)
    page.click("#totp-off")
    page.wait_for_selector("#reauth_code")
    seen["reauth-code"] = problems(page)
    page.fill("#reauth_password", PASSWORD)
    # One step ahead: the confirming code's step is taken (a code never works twice).
    page.fill("#reauth_code", app.at(time.time() + 30))
    page.click("#reauth-submit")
    page.wait_for_selector("#totp-start")
    assert "is off" in page.text_content("#totp-notice")
    context.close()
    assert {name: found for name, found in seen.items() if found} == {}
