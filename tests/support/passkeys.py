"""Passkey helpers for tests: the software authenticator driven through the JSON API, and
checks of the answers (see tests/support/authenticator.py for the authenticator itself)."""

from __future__ import annotations

import json
from typing import Any

from tests.support import body, signed_in
from tests.support.authenticator import Credential, SoftAuthenticator


def authenticator(base_url: str) -> SoftAuthenticator:
    return SoftAuthenticator(base_url)


async def creation_options(client) -> dict:
    r = await client.fetch("/api/users/me/passkeys/options", "POST")
    assert r.code == 200, r.body
    return body(r)


async def add_passkey(client, auth, name: str | None = None, **kw):
    credential, cred = auth.create(await creation_options(client), **kw)
    payload = {"credential": credential}
    if name is not None:
        payload["name"] = name
    return await client.fetch("/api/users/me/passkeys", "POST", json_body=payload), cred


async def request_options(client) -> dict:
    r = await client.fetch("/api/auth/login/passkey/options", "POST")
    assert r.code == 200, r.body
    return body(r)


async def passkey_login(client, auth, cred, **kw):
    assertion = auth.get(await request_options(client), cred, **kw)
    return await client.fetch(
        "/api/auth/login/passkey", "POST", json_body={"credential": assertion}
    )


def no_session_cookie(response) -> bool:
    return not any("plp_session=" in h for h in response.headers.get_list("Set-Cookie"))


async def events(ctx, name: str) -> list:
    await ctx.audit.sync()
    return [e for e in await ctx.db.list_audit(200) if e.event == name]


async def pupil_with_passkey(make_client, make_user, base_url, name="pupil", role="student"):
    client = await signed_in(make_client, make_user, name, role)
    auth = authenticator(base_url)
    r, cred = await add_passkey(client, auth)
    assert r.code == 201, r.body
    return client, auth, cred


def broken(credential: dict, where: str, value) -> dict:
    copy = json.loads(json.dumps(credential))
    target = copy["response"] if where.startswith("response.") else copy
    target[where.removeprefix("response.")] = value
    return copy


async def register_passkey(
    client: Any, auth: SoftAuthenticator, name: str | None = None
) -> Credential:
    """Add a passkey for the signed-in `client` (tests/support/client.py) through the API."""
    r = await client.fetch("/api/users/me/passkeys/options", "POST")
    assert r.code == 200, r.body
    credential, cred = auth.create(json.loads(r.body))
    payload: dict[str, Any] = {"credential": credential}
    if name is not None:
        payload["name"] = name
    r = await client.fetch("/api/users/me/passkeys", "POST", json_body=payload)
    assert r.code == 201, r.body
    return cred
