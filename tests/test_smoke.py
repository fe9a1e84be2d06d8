"""A first walk through register, me, logout."""

from __future__ import annotations

import pytest

from tests.conftest import body


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
