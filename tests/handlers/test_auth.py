"""Register, sign in and out through /api/auth (plp/handlers/auth.py)."""

from __future__ import annotations

import pytest

from tests.support import body


@pytest.mark.gen_test
async def test_register_me_logout(client):
    r = await client.register("alice", displayName="Alice A")
    assert r.code == 201, r.body
    assert body(r)["user"]["username"] == "alice"
    r = await client.fetch("/api/users/me")
    assert r.code == 200
    assert body(r)["user"]["displayName"] == "Alice A"
    r = await client.fetch("/api/auth/logout", "POST")
    assert r.code == 200
    r = await client.fetch("/api/users/me")
    assert r.code == 401
    assert body(r)["error"] == "not_authenticated"


@pytest.mark.gen_test
async def test_username_with_surrounding_spaces_signs_in(client, make_client, make_user):
    # Phone and tablet keyboards add a space after a word; a child must still get in.
    await make_user("mia")
    response = await client.login(" Mia ")
    assert response.code == 200, response.body
    assert body(response)["user"]["username"] == "mia"
    tab = await make_client().login("mia\t")
    assert tab.code == 200, tab.body
    inner = await make_client().login("m ia")
    assert inner.code == 401
