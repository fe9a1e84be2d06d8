"""Passkey ceremonies across processes (SPEC §14, §11 scale-out): with Redis, a challenge
issued by process A is finished on process B, and stays single use across both."""

from __future__ import annotations

import json
import random

import pytest

from tests.support import body
from tests.support.authenticator import SoftAuthenticator
from tests.support.multiproc import client_for, two_processes

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with two_processes(tmp_path_factory.mktemp("passkeys")) as pair:
        yield pair


@pytest.mark.gen_test(timeout=60)
async def test_register_on_a_finish_on_b_then_sign_in_across(cluster):
    a, b = cluster
    owner_a = client_for(a)
    name = f"pk{random.randint(0, 10**9)}"
    assert (await owner_a.register(name)).code == 201
    # Registration: options from A, the answer to B on the same session.
    options = body(await owner_a.fetch("/api/users/me/passkeys/options", "POST"))
    credential, cred = SoftAuthenticator(b.url).create(options)
    owner_b = client_for(b, owner_a.cookies)
    r = await owner_b.fetch("/api/users/me/passkeys", "POST", json_body={"credential": credential})
    assert r.code == 201, r.body

    # Sign-in: options (and the plp_passkey cookie) from A, the assertion finished on B.
    auth = SoftAuthenticator(b.url)
    auth.credentials[cred.id] = cred
    anon_a = client_for(a)
    options = body(await anon_a.fetch("/api/auth/login/passkey/options", "POST"))
    assert "plp_passkey" in anon_a.cookies
    on_b = client_for(b, anon_a.cookies)
    assertion = auth.get(options, cred)
    r = await on_b.fetch("/api/auth/login/passkey", "POST", json_body={"credential": assertion})
    assert r.code == 200, r.body
    assert body(r)["user"]["username"] == name
    me = await on_b.fetch("/api/sessions")
    assert [s["method"] for s in body(me)["sessions"] if s["current"]] == ["passkey"]
    # The session works on A too.
    assert (
        body(await client_for(a, on_b.cookies).fetch("/api/users/me"))["user"]["username"] == name
    )

    # The same challenge replayed on A (cookie kept, fresh signature): already used.
    replay = client_for(a, {k: v for k, v in anon_a.cookies.items() if k != "plp_session"})
    again = SoftAuthenticator(a.url).get(options, cred)
    r = await replay.fetch("/api/auth/login/passkey", "POST", json_body={"credential": again})
    assert r.code == 400 and "already used" in json.loads(r.body)["message"]
    assert not any("plp_session=" in h for h in r.headers.get_list("Set-Cookie"))
