"""Passkeys end to end in real Chromium with its virtual authenticator (Chrome DevTools
Protocol `WebAuthn.addVirtualAuthenticator`, a platform authenticator with resident keys and
user verification): add a passkey on /account, sign out, and sign in on /login with it
without typing a username (SPEC §14)."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.support import PageProblems
from tests.support.tour import overflow

pytestmark = pytest.mark.browser

AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}


def test_add_a_passkey_then_sign_in_with_it(browser, live_server):
    # WebAuthn needs a secure context: http://localhost is one, and the RP ID is its name.
    server = live_server(env={"PLP_RP_ID": "localhost"})
    origin = f"http://localhost:{server.port}"
    context = browser.new_context()
    problems = PageProblems()
    page = problems.watch(context.new_page())
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    authenticator = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
    page.goto(origin + "/register")
    page.fill("input[name=username]", "passkey.kid")
    page.fill("input[name=password]", "a long enough passphrase")
    page.click("button[type=submit]")
    page.wait_for_url(origin + "/dashboard")

    page.goto(origin + "/account")
    page.fill("#passkey-new-name", "Browser key")
    page.click("#passkey-add-button")
    page.wait_for_url(origin + "/account?done=passkey-added#passkeys")
    assert page.inner_text("#passkey-notice") == "Passkey added."
    assert page.inner_text("#passkey-list .passkey-name") == "Browser key"
    held = cdp.send(
        "WebAuthn.getCredentials", {"authenticatorId": authenticator["authenticatorId"]}
    )
    assert len(held["credentials"]) == 1 and held["credentials"][0]["isResidentCredential"]
    # The listed passkey with its forms: no sideways scrolling on a phone, no serious axe
    # violation (the page tour sees /account only without passkeys).
    page.fill("#passkey-list input[name=name]", "W" * 64)  # one long word must wrap
    page.click("#passkey-list .passkey-rename button")
    page.wait_for_url(origin + "/account?done=passkey-renamed")
    page.set_viewport_size({"width": 390, "height": 844})
    assert overflow(page) <= 0
    violations = Axe().run(page).response["violations"]
    assert [v["id"] for v in violations if v.get("impact") in ("serious", "critical")] == []
    page.set_viewport_size({"width": 1280, "height": 800})

    page.click("#logout")
    page.wait_for_url(origin + "/login")
    page.goto(origin + "/login?next=/account")
    assert page.input_value("#username") == ""
    page.click("#passkey-login-button")
    page.wait_for_url(origin + "/account")
    sessions = page.evaluate("async () => (await (await fetch('/api/sessions')).json()).sessions")
    assert [s["method"] for s in sessions if s["current"]] == ["passkey"]
    assert "last used" in page.inner_text("#passkey-list")
    context.close()
    assert problems.items == []


def test_a_failed_passkey_sign_in_is_explained_in_the_page(browser, live_server):
    server = live_server(env={"PLP_RP_ID": "localhost"})
    origin = f"http://localhost:{server.port}"
    context = browser.new_context()
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    # An authenticator holding no passkey for this site: the browser refuses, the page says so.
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
    page.goto(origin + "/login")
    page.click("#passkey-login-button")
    error = page.locator("#passkey-login-error")
    error.wait_for(state="visible", timeout=30_000)
    assert error.inner_text().strip()
    assert page.url.startswith(origin + "/login")
    assert not any(c["name"] == "plp_session" for c in context.cookies())
    context.close()
