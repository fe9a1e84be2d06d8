"""The passkey parts of the pages (SPEC §7, §14): the Passkeys section of /account with its
rename and remove forms (remove asks for a recent sign-in inline), and the passkey button on
/login with its script."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from tests.support import PASSWORD, body, signed_in, visible_text
from tests.support.authenticator import SoftAuthenticator
from tests.support.passkeys import register_passkey

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
WINDOW = 600.0


async def post_form(client, path: str, fields: dict):
    xsrf = await client.form_xsrf("/account")
    return await client.fetch(
        path, "POST", body=urlencode({"_xsrf": xsrf, **fields}), headers=FORM, xsrf=False
    )


async def with_passkeys(make_client, make_user, base_url, *names, role="student"):
    client = await signed_in(make_client, make_user, "pupil", role)
    auth = SoftAuthenticator(base_url)
    for name in names:
        await register_passkey(client, auth, name)
    ids = [p["id"] for p in body(await client.fetch("/api/users/me/passkeys"))["passkeys"]]
    return client, ids


@pytest.mark.gen_test
async def test_account_lists_passkeys_and_offers_adding(make_client, make_user, base_url):
    client = await signed_in(make_client, make_user, "pupil")
    page = (await client.fetch("/account")).body.decode()
    assert "You have no passkeys yet." in page
    assert 'id="passkey-add-button"' in page and "passkeys.js" in page
    assert "<script>" not in page  # no inline script (CSP)
    auth = SoftAuthenticator(base_url)
    await register_passkey(client, auth, "School <laptop>")
    page = (await client.fetch("/account")).body.decode()
    assert "School &lt;laptop&gt;" in page and "School <laptop>" not in page
    assert "not used to sign in yet" in visible_text(page)


@pytest.mark.gen_test
async def test_rename_form_and_its_errors(make_client, make_user, base_url):
    client, ids = await with_passkeys(make_client, make_user, base_url, "Old")
    r = await post_form(client, f"/account/passkeys/{ids[0]}/rename", {"name": "New"})
    assert r.code == 302 and r.headers["Location"] == "/account?done=passkey-renamed"
    assert body(await client.fetch("/api/users/me/passkeys"))["passkeys"][0]["name"] == "New"
    r = await post_form(client, f"/account/passkeys/{ids[0]}/rename", {"name": "x" * 65})
    assert r.code == 400
    page = r.body.decode()
    key = f"passkey-{ids[0]}-name"
    assert f'aria-describedby="{key}-error"' in page and 'aria-invalid="true"' in page
    assert f'id="{key}-error"' in page
    r = await post_form(client, "/account/passkeys/999/rename", {"name": "Mine"})
    assert r.code == 404


@pytest.mark.gen_test
async def test_remove_asks_for_a_recent_sign_in_then_carries_on(
    make_client, make_user, base_url, clock
):
    client, ids = await with_passkeys(make_client, make_user, base_url, "One")
    clock.advance(WINDOW + 1)
    r = await post_form(client, f"/account/passkeys/{ids[0]}/delete", {})
    assert r.code == 200
    page = r.body.decode()
    assert "Confirm it is you" in page and "Removing a passkey" in page
    assert f'action="/account/passkeys/{ids[0]}/delete"' in page
    assert len(body(await client.fetch("/api/users/me/passkeys"))["passkeys"]) == 1
    r = await post_form(
        client, f"/account/passkeys/{ids[0]}/delete", {"reauth_password": "wrong password"}
    )
    assert r.code == 400
    r = await post_form(client, f"/account/passkeys/{ids[0]}/delete", {"reauth_password": PASSWORD})
    assert r.code == 302 and r.headers["Location"] == "/account?done=passkey-removed"
    assert body(await client.fetch("/api/users/me/passkeys"))["passkeys"] == []
    page = (await client.fetch("/account?done=passkey-removed")).body.decode()
    assert "Passkey removed." in page


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", [{"require_mfa": ("teacher",)}], indirect=True)
async def test_removing_the_last_required_passkey_is_refused_on_the_page(
    make_client, make_user, base_url
):
    client, ids = await with_passkeys(make_client, make_user, base_url, "Only", role="teacher")
    r = await post_form(client, f"/account/passkeys/{ids[0]}/delete", {})
    assert r.code == 409
    page = r.body.decode()
    assert re.search(r'role="alert"[^>]*>[^<]*last passkey', page)
    assert len(body(await client.fetch("/api/users/me/passkeys"))["passkeys"]) == 1


@pytest.mark.gen_test
async def test_login_page_offers_a_passkey(client):
    page = (await client.fetch("/login?next=/chat")).body.decode()
    assert 'id="passkey-login-button"' in page and "Sign in with a passkey" in page
    assert 'data-next="/chat"' in page
    assert re.search(r'<script type="module" src="/static/passkeys\.js\?v=\w+"', page)
    script = await client.fetch("/static/passkeys.js")
    assert script.code == 200 and b"parseRequestOptionsFromJSON" in script.body
