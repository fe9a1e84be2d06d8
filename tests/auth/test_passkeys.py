"""Managing passkeys over the JSON API (SPEC §14), with a software authenticator signing real
WebAuthn responses: register, list, rename, remove (recent sign-in, the last passkey of a
`require-mfa` role), other users' passkeys, and every kind of bad input."""

from __future__ import annotations

import json

import pytest

from tests.support import PASSWORD, body, signed_in
from tests.support.authenticator import unb64url
from tests.support.passkeys import (
    add_passkey,
    authenticator,
    broken,
    creation_options,
    events,
    pupil_with_passkey,
)

WINDOW = 600.0  # the default reauth-window
TTL = 300.0  # challenges live 5 minutes


@pytest.mark.gen_test
async def test_register_list_and_rename(make_client, make_user, base_url, ctx):
    client = await signed_in(make_client, make_user, "pupil")
    options = await creation_options(client)
    # Discoverable, user-verified, no attestation; the user handle is not the username.
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["attestation"] == "none"
    assert options["rp"]["id"] == "localhost"
    assert b"pupil" not in unb64url(options["user"]["id"])
    assert options["excludeCredentials"] == []
    auth = authenticator(base_url)
    credential, cred = auth.create(options)
    r = await client.fetch(
        "/api/users/me/passkeys", "POST", json_body={"credential": credential, "name": " Laptop "}
    )
    assert r.code == 201, r.body
    passkey = body(r)["passkey"]
    assert set(passkey) == {"id", "name", "createdAt", "lastUsedAt"}
    assert passkey["name"] == "Laptop" and passkey["lastUsedAt"] is None
    # The same user handle comes back, and the new credential is excluded next time.
    again = await creation_options(client)
    assert again["user"]["id"] == options["user"]["id"]
    assert [c["id"] for c in again["excludeCredentials"]] == [cred.id_text]
    r, _ = await add_passkey(client, auth)  # no name: the default
    assert r.code == 201 and body(r)["passkey"]["name"] == "Passkey"
    r = await client.fetch("/api/users/me/passkeys")
    assert [p["name"] for p in body(r)["passkeys"]] == ["Laptop", "Passkey"]
    r = await client.fetch(
        f"/api/users/me/passkeys/{passkey['id']}", "PATCH", json_body={"name": "Old laptop"}
    )
    assert r.code == 200 and body(r)["passkey"]["name"] == "Old laptop"
    added = await events(ctx, "passkey_added")
    assert len(added) == 2 and added[0].username == "pupil"
    assert cred.id_text not in json.dumps([e.detail for e in added])


@pytest.mark.gen_test
async def test_registration_needs_user_verification_and_this_origin(
    make_client, make_user, base_url
):
    client = await signed_in(make_client, make_user, "pupil")
    auth = authenticator(base_url)
    for change in ({"uv": False}, {"origin": "https://evil.example"}, {"rp_id": "evil.example"}):
        r, _ = await add_passkey(client, auth, **change)
        assert r.code == 400, (change, r.body)
        assert body(r)["fields"]["credential"]
    assert body(await client.fetch("/api/users/me/passkeys"))["passkeys"] == []


@pytest.mark.gen_test
async def test_removing_needs_a_recent_sign_in(make_client, make_user, base_url, ctx, clock):
    client, auth, _cred = await pupil_with_passkey(make_client, make_user, base_url)
    passkey_id = body(await client.fetch("/api/users/me/passkeys"))["passkeys"][0]["id"]
    clock.advance(WINDOW + 1)
    r = await client.fetch(f"/api/users/me/passkeys/{passkey_id}", "DELETE")
    assert r.code == 401 and body(r)["error"] == "reauth_required"
    assert len(body(await client.fetch("/api/users/me/passkeys"))["passkeys"]) == 1
    r = await client.fetch("/api/auth/reauth", "POST", json_body={"password": PASSWORD})
    assert r.code == 200
    r = await client.fetch(f"/api/users/me/passkeys/{passkey_id}", "DELETE")
    assert r.code == 204
    assert body(await client.fetch("/api/users/me/passkeys"))["passkeys"] == []
    removed = await events(ctx, "passkey_removed")
    assert removed[0].detail["passkey"] == passkey_id


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", [{"require_mfa": ("teacher", "admin")}], indirect=True)
async def test_the_last_passkey_of_a_require_mfa_role_stays(make_client, make_user, base_url):
    teacher, auth, _cred = await pupil_with_passkey(
        make_client, make_user, base_url, "teach", "teacher"
    )
    r, _ = await add_passkey(teacher, auth, "Second")
    assert r.code == 201
    ids = [p["id"] for p in body(await teacher.fetch("/api/users/me/passkeys"))["passkeys"]]
    assert (await teacher.fetch(f"/api/users/me/passkeys/{ids[0]}", "DELETE")).code == 204
    r = await teacher.fetch(f"/api/users/me/passkeys/{ids[1]}", "DELETE")
    assert r.code == 409 and body(r)["error"] == "conflict"
    assert "last passkey" in body(r)["message"]
    assert len(body(await teacher.fetch("/api/users/me/passkeys"))["passkeys"]) == 1
    # A student is not in require-mfa: their last passkey may go.
    pupil, _a, _c = await pupil_with_passkey(make_client, make_user, base_url)
    pid = body(await pupil.fetch("/api/users/me/passkeys"))["passkeys"][0]["id"]
    assert (await pupil.fetch(f"/api/users/me/passkeys/{pid}", "DELETE")).code == 204


@pytest.mark.gen_test
async def test_another_users_passkey_is_not_found(make_client, make_user, base_url):
    alice, _auth, _cred = await pupil_with_passkey(make_client, make_user, base_url, "alice")
    pid = body(await alice.fetch("/api/users/me/passkeys"))["passkeys"][0]["id"]
    bob = await signed_in(make_client, make_user, "bob")
    for method, payload in (("PATCH", {"name": "mine"}), ("DELETE", None)):
        for target in (pid, 999999, "abc", "1e3"):
            r = await bob.fetch(f"/api/users/me/passkeys/{target}", method, json_body=payload)
            assert r.code == 404 and body(r)["error"] == "not_found", (method, target)
    listed = body(await alice.fetch("/api/users/me/passkeys"))["passkeys"]
    assert len(listed) == 1 and listed[0]["name"] == "Passkey"


@pytest.mark.gen_test
async def test_anonymous_users_cannot_manage_passkeys(make_client):
    client = make_client()
    for method, path in (
        ("POST", "/api/users/me/passkeys/options"),
        ("GET", "/api/users/me/passkeys"),
        ("POST", "/api/users/me/passkeys"),
        ("PATCH", "/api/users/me/passkeys/1"),
        ("DELETE", "/api/users/me/passkeys/1"),
        ("POST", "/api/auth/reauth/passkey/options"),
    ):
        r = await client.fetch(path, method, json_body={} if method != "GET" else None)
        assert r.code == 401 and body(r)["error"] == "not_authenticated", path


BAD_REGISTRATIONS = [
    ("no credential", lambda c: {}),
    ("credential null", lambda c: {"credential": None}),
    ("credential a string", lambda c: {"credential": json.dumps(c)}),
    ("credential a list", lambda c: {"credential": [c]}),
    ("credential empty", lambda c: {"credential": {}}),
    ("id a number", lambda c: {"credential": broken(c, "id", 5)}),
    ("response missing", lambda c: {"credential": broken(c, "response", None)}),
    ("garbage base64", lambda c: {"credential": broken(c, "response.attestationObject", "!!*")}),
    ("odd base64", lambda c: {"credential": broken(c, "response.attestationObject", "abcde")}),
    ("not CBOR", lambda c: {"credential": broken(c, "response.attestationObject", "AAAA")}),
    ("client data not JSON", lambda c: {"credential": broken(c, "response.clientDataJSON", "e30")}),
    ("unicode id", lambda c: {"credential": broken(c, "rawId", "é")}),
    ("type wrong", lambda c: {"credential": broken(c, "type", "password")}),
    ("transports a string", lambda c: {"credential": broken(c, "response.transports", "usb")}),
    ("name too long", lambda c: {"credential": c, "name": "x" * 65}),
    ("name a number", lambda c: {"credential": c, "name": 7}),
    ("name control char", lambda c: {"credential": c, "name": "a\x07b"}),
]


@pytest.mark.gen_test
@pytest.mark.parametrize("why,make", BAD_REGISTRATIONS, ids=[b[0] for b in BAD_REGISTRATIONS])
async def test_bad_registration_input(make_client, make_user, base_url, why, make):
    client = await signed_in(make_client, make_user, "pupil")
    credential, _ = authenticator(base_url).create(await creation_options(client))
    payload = make(credential)
    r = await client.fetch("/api/users/me/passkeys", "POST", json_body=payload)
    if why == "transports a string":  # a hint only: ignored, the passkey is added
        assert r.code == 201
        return
    assert r.code == 400, (why, r.body)
    answer = body(r)
    assert answer["error"] == "bad_request" and answer["message"]
    assert set(answer.get("fields", {})) <= {"credential", "name"}
    assert body(await client.fetch("/api/users/me/passkeys"))["passkeys"] == []


@pytest.mark.gen_test
async def test_bad_rename_input(make_client, make_user, base_url):
    client, _auth, _cred = await pupil_with_passkey(make_client, make_user, base_url)
    pid = body(await client.fetch("/api/users/me/passkeys"))["passkeys"][0]["id"]
    for payload in (
        {},
        {"name": None},
        {"name": ""},
        {"name": "  "},
        {"name": 1},
        {"name": ["a"]},
        {"name": "x" * 65},
        {"name": "\u202e\x00"},
    ):
        r = await client.fetch(f"/api/users/me/passkeys/{pid}", "PATCH", json_body=payload)
        assert r.code == 400, payload
        assert body(r)["fields"]["name"]
    r = await client.fetch(f"/api/users/me/passkeys/{pid}", "PATCH", json_body={"name": "x" * 64})
    assert r.code == 200
