"""The half-done sign-in across two real plp processes sharing Redis and PostgreSQL (SPEC §14):
the password on process A, the code on process B; the half-done sign-in is single use on
both, wrong codes are counted on both, and neither process logs a secret or a code."""

from __future__ import annotations

import random
import time

import pyotp
import pytest

from tests.support import body
from tests.support.multiproc import client_for, two_processes

pytestmark = pytest.mark.services

STEP = 30


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with two_processes(tmp_path_factory.mktemp("mfa")) as pair:
        yield pair


async def _enrolled(server):
    name = f"tess{random.randint(0, 10**9)}"
    client = client_for(server)
    assert (await client.register(name)).code == 201
    r = await client.fetch("/api/users/me/totp", "POST")
    secret = body(r)["secret"]
    app = pyotp.TOTP(secret)
    r = await client.fetch("/api/users/me/totp/confirm", "POST", json_body={"code": app.now()})
    assert r.code == 200, r.body
    return name, secret, app, body(r)["recoveryCodes"]


async def _half(server, name):
    client = client_for(server)
    r = await client.login(name)
    assert r.code == 200 and body(r)["mfaRequired"] is True, r.body
    assert "plp_session" not in client.cookies
    return client


@pytest.mark.gen_test(timeout=60)
async def test_password_on_one_process_code_on_the_other(cluster):
    a, b = cluster
    name, secret, app, codes = await _enrolled(a)
    on_a = await _half(a, name)
    # The browser's next request lands on B, with the cookie A set.
    on_b = client_for(b, on_a.cookies)
    # One step ahead of the confirming code: accepted (±1) and later than the step it took.
    code = app.at(time.time() + STEP)
    r = await on_b.fetch("/api/auth/login/mfa", "POST", json_body={"code": code})
    assert r.code == 200, r.body
    assert body(r)["user"]["username"] == name
    for server in (a, b):
        signed = client_for(server, on_b.cookies)
        r = await signed.fetch("/api/sessions")
        assert r.code == 200
        (current,) = [s for s in body(r)["sessions"] if s["current"]]
        assert current["method"] == "password+totp"
    # Replayed on A: the pending entry was taken on B.
    replay = client_for(a, on_a.cookies)
    r = await replay.fetch("/api/auth/login/mfa", "POST", json_body={"code": app.now()})
    assert r.code == 401 and body(r)["error"] == "not_authenticated"
    # The same code on a new sign-in, on A: the step is taken in the shared database.
    again = await _half(a, name)
    r = await again.fetch("/api/auth/login/mfa", "POST", json_body={"code": code})
    assert r.code == 400 and body(r)["error"] == "invalid_code"
    # Wrong codes alternate between the processes and still end the sign-in at five.
    for attempt in range(4):
        server = b if attempt % 2 else a
        c = client_for(server, again.cookies)
        r = await c.fetch("/api/auth/login/mfa", "POST", json_body={"code": "000000"})
        assert r.code == 400, r.body
    r = await client_for(b, again.cookies).fetch(
        "/api/auth/login/mfa", "POST", json_body={"recoveryCode": codes[0]}
    )
    assert r.code == 401 and body(r)["error"] == "not_authenticated"
    for server in (a, b):
        log = server.log_text()
        assert "mfa_failed" in log or "login" in log
        for needle in (secret, code, *codes):
            assert needle not in log
