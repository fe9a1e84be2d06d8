"""The /reset page and the admin console's "Make reset code" (SPEC §7, §13), over real HTTP
with the XSRF form field a browser sends."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from tests.support import PASSWORD, Client, body, visible_text

NEW_PASSWORD = "a brand new passphrase"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CODE_ON_PAGE = re.compile(r'<code id="reset-code">([A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})</code>')
LINK_TEXT = "Forgot your password? Ask your teacher for a reset code."


async def submit(client: Client, path: str, fields: dict, *, page: str) -> object:
    xsrf = await client.form_xsrf(page)
    return await client.fetch(
        path, "POST", body=urlencode({"_xsrf": xsrf, **fields}), headers=FORM, xsrf=False
    )


async def admin_client(make_client, make_user) -> Client:
    await make_user("head", "admin")
    client = make_client()
    r = await submit(client, "/login", {"username": "head", "password": PASSWORD}, page="/login")
    assert r.code == 302, r.body
    return client


async def make_code(admin: Client, user_id: int) -> tuple[object, str]:
    r = await submit(admin, f"/admin/users/{user_id}/reset-code", {}, page="/admin")
    assert r.code == 200, r.body
    match = CODE_ON_PAGE.search(r.body.decode())
    assert match, r.body
    return r, match.group(1)


def reset_fields(
    code: str, username: str = "kid", new: str = NEW_PASSWORD, again: str = ""
) -> dict:
    return {
        "username": username,
        "code": code,
        "newPassword": new,
        "confirmPassword": again or new,
    }


@pytest.mark.gen_test
async def test_login_links_to_reset(make_client):
    page = (await make_client().fetch("/login")).body.decode()
    assert f'<a href="/reset" id="forgot">{LINK_TEXT}</a>' in page


@pytest.mark.gen_test
async def test_reset_page_form(make_client, ctx):
    r = await make_client().fetch("/reset")
    assert r.code == 200
    page = r.body.decode()
    assert 'name="_xsrf"' in page and '<form method="post" action="/reset">' in page
    for name in ("username", "code", "newPassword", "confirmPassword"):
        assert f'name="{name}"' in page and f'<label for="{name}">' in page
    assert 'name="viewport"' in page
    assert await ctx.store.count() == 0  # an anonymous page stores nothing


@pytest.mark.gen_test
async def test_admin_button_shows_code_once_and_pupil_resets_on_the_page(
    make_client, make_user, ctx
):
    admin = await admin_client(make_client, make_user)
    kid = await make_user("kid")
    page = (await admin.fetch("/admin")).body.decode()
    assert f'action="/admin/users/{kid.id}/reset-code"' in page
    assert 'aria-label="Make reset code for kid"' in page
    me = body(await admin.fetch("/api/users/me"))["user"]["id"]
    assert f'action="/admin/users/{me}/reset-code"' not in page  # not for oneself

    old = make_client()
    assert (await old.login("kid")).code == 200
    r, code = await make_code(admin, kid.id)
    assert r.headers["Cache-Control"] == "no-store"
    assert "Valid until" in visible_text(r.body.decode())
    assert code not in (r.effective_url or "")
    # Shown once: the console itself never shows it again.
    assert code not in (await admin.fetch("/admin")).body.decode()

    pupil = make_client()
    r = await submit(pupil, "/reset", reset_fields(code.lower()), page="/reset")
    assert r.code == 302 and r.headers["Location"] == "/dashboard", r.body
    assert (await pupil.fetch("/dashboard")).code == 200
    assert body(await pupil.fetch("/api/users/me"))["user"]["username"] == "kid"
    assert (await old.fetch("/api/users/me")).code == 401
    assert (await make_client().login("kid", NEW_PASSWORD)).code == 200


@pytest.mark.gen_test
async def test_wrong_code_rerenders_400_with_the_error_at_the_code_field(make_client, make_user):
    await make_user("kid")
    r = await submit(make_client(), "/reset", reset_fields("ABCD-EFGH-JKMN"), page="/reset")
    assert r.code == 400
    page = r.body.decode()
    assert 'id="code-error"' in page
    assert re.search(r'id="code"[^>]*aria-describedby="code-hint code-error"', page)
    assert re.search(r'id="code"[^>]*aria-invalid="true"', page)
    assert 'value="kid"' in page  # the username is kept, the code and passwords are not
    assert "plp_session" not in r.headers.get("Set-Cookie", "")


@pytest.mark.parametrize(
    "fields, field",
    [
        (reset_fields("ABCD-EFGH-JKMN", new="short"), "newPassword"),
        (reset_fields("ABCD-EFGH-JKMN", again="something else entirely"), "confirmPassword"),
        (reset_fields("", username="kid"), "code"),
        (reset_fields("ABCD-EFGH-JKMN", username=""), "username"),
        (reset_fields("A" * 65), "code"),
    ],
)
@pytest.mark.gen_test
async def test_bad_fields_rerender_400_at_their_field(make_client, make_user, fields, field):
    await make_user("kid")
    r = await submit(make_client(), "/reset", fields, page="/reset")
    assert r.code == 400, r.body
    page = r.body.decode()
    assert f'id="{field}-error"' in page
    assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', page), page


@pytest.mark.gen_test
async def test_disabled_account_rerenders_403(make_client, make_user, ctx):
    admin = await admin_client(make_client, make_user)
    kid = await make_user("kid")
    _, code = await make_code(admin, kid.id)
    await ctx.db.update_user(kid.id, disabled=True)
    r = await submit(make_client(), "/reset", reset_fields(code), page="/reset")
    assert r.code == 403
    assert "disabled" in visible_text(r.body.decode())


@pytest.mark.gen_test
async def test_reset_form_without_xsrf_is_403(make_client, make_user):
    await make_user("kid")
    r = await make_client().fetch(
        "/reset", "POST", body=urlencode(reset_fields("ABCD-EFGH-JKMN")), headers=FORM, xsrf=False
    )
    assert r.code == 403


@pytest.mark.gen_test
async def test_admin_button_refusals(make_client, make_user, ctx):
    admin = await admin_client(make_client, make_user)
    me = body(await admin.fetch("/api/users/me"))["user"]["id"]
    r = await submit(admin, f"/admin/users/{me}/reset-code", {}, page="/admin")
    assert r.code == 403
    r = await submit(admin, "/admin/users/999999/reset-code", {}, page="/admin")
    assert r.code == 404
    r = await admin.fetch(f"/admin/users/{me}/reset-code")
    assert r.code == 405
    # Not an admin: the page is forbidden, and nothing is issued.
    await make_user("teach", "teacher")
    kid = await make_user("kid")
    teacher = make_client()
    await submit(teacher, "/login", {"username": "teach", "password": PASSWORD}, page="/login")
    r = await submit(teacher, f"/admin/users/{kid.id}/reset-code", {}, page="/dashboard")
    assert r.code == 403
    assert await ctx.db.get_reset_code(kid.id) is None
    r = await make_client().fetch(f"/admin/users/{kid.id}/reset-code", "POST", body="")
    assert r.code in (401, 403)  # signed out, no XSRF cookie at all
