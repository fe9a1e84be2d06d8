"""Passkeys and the authenticator app together (SPEC §14): either one satisfies
`require-mfa`, and with the app on, a `require-mfa` user may remove their last passkey."""

from __future__ import annotations

import pyotp
import pytest

from tests.support import body
from tests.support.passkeys import pupil_with_passkey

REQUIRE = [{"require_mfa": ("teacher", "admin")}]


async def turn_on_totp(client) -> None:
    r = await client.fetch("/api/users/me/totp", "POST")
    assert r.code == 200, r.body
    code = pyotp.TOTP(body(r)["secret"]).now()
    r = await client.fetch("/api/users/me/totp/confirm", "POST", json_body={"code": code})
    assert r.code == 200, r.body


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", REQUIRE, indirect=True)
async def test_a_passkey_alone_lets_a_require_mfa_user_in(make_client, make_user, base_url):
    teacher, _auth, _cred = await pupil_with_passkey(
        make_client, make_user, base_url, "teach", "teacher"
    )
    r = await teacher.fetch("/api/channels")
    assert r.code == 200, r.body
    r = await teacher.fetch("/dashboard")
    assert r.code == 200


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", REQUIRE, indirect=True)
async def test_with_the_app_on_the_last_passkey_may_go(make_client, make_user, base_url):
    teacher, _auth, _cred = await pupil_with_passkey(
        make_client, make_user, base_url, "teach", "teacher"
    )
    pid = body(await teacher.fetch("/api/users/me/passkeys"))["passkeys"][0]["id"]
    r = await teacher.fetch(f"/api/users/me/passkeys/{pid}", "DELETE")
    assert r.code == 409  # the only second factor
    await turn_on_totp(teacher)
    r = await teacher.fetch(f"/api/users/me/passkeys/{pid}", "DELETE")
    assert r.code == 204, r.body
    # Still held to nothing: the app is the second factor now.
    assert (await teacher.fetch("/api/channels")).code == 200
