"""Sealed TOTP secrets (plp/auth/secretbox.py): bound to their owner, opened under the current
or a previous SESSION_SECRET (then re-sealed under the current one at use), refused when the
key is gone or the value was altered."""

from __future__ import annotations

import pyotp
import pytest

from plp.auth import totp
from plp.auth.secretbox import SecretBox, Unsealable
from tests.support import body, signed_in

OLD = "old-secret-" + "o" * 40
NEW = "new-secret-" + "n" * 40


def test_seal_and_open_bound_to_the_owner():
    box = SecretBox(NEW, purpose="test")
    sealed = box.seal("JBSWY3DPEHPK3PXP", owner="totp:1")
    assert "JBSWY3DPEHPK3PXP" not in sealed and sealed.startswith("v1.")
    assert box.open(sealed, owner="totp:1") == "JBSWY3DPEHPK3PXP"
    assert box.seal("x", owner="a") != box.seal("x", owner="a")  # a fresh nonce each time
    with pytest.raises(Unsealable):
        box.open(sealed, owner="totp:2")  # copied to another user's row: does not open
    with pytest.raises(Unsealable):
        SecretBox(NEW, purpose="other").open(sealed, owner="totp:1")
    head, data = sealed.rsplit(".", 1)
    for broken in (sealed[:-2] + "AA", "v1.x", "v2" + sealed[2:], "nonsense", head + ".@@"):
        if broken != sealed:
            with pytest.raises(Unsealable):
                box.open(broken, owner="totp:1")


def test_rotation_opens_old_values_and_asks_for_a_reseal():
    old_box = SecretBox(OLD, purpose="test")
    sealed = old_box.seal("S", owner="o")
    rotated = SecretBox(NEW, (OLD,), purpose="test")
    assert rotated.open(sealed, owner="o") == "S"
    assert rotated.needs_reseal(sealed)
    assert not rotated.needs_reseal(rotated.seal("S", owner="o"))
    with pytest.raises(Unsealable):
        SecretBox(NEW, purpose="test").open(sealed, owner="o")  # the old key is gone


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "settings", [{"session_secret": NEW, "session_secret_previous": (OLD,)}], indirect=True
)
async def test_a_secret_sealed_before_rotation_still_signs_in_and_is_resealed(
    make_client, make_user, ctx, clock
):
    client = await signed_in(make_client, make_user, "tess", "teacher")
    secret = body(await client.fetch("/api/users/me/totp", "POST"))["secret"]
    user = (await ctx.db.get_credentials("tess"))[0]
    # As if enrolled while OLD was the current secret.
    old_sealed = SecretBox(OLD, purpose="totp secret").seal(secret, owner=f"totp:{user.id}")
    await ctx.db.delete_totp(user.id)
    await ctx.db.start_totp(user.id, old_sealed)
    app = pyotp.TOTP(secret)
    r = await client.fetch(
        "/api/users/me/totp/confirm", "POST", json_body={"code": app.at(clock.now)}
    )
    assert r.code == 200
    record = await ctx.db.get_totp(user.id)
    assert record.sealed_secret != old_sealed and not totp.box(ctx).needs_reseal(
        record.sealed_secret
    )
