"""Administration (SPEC §5, §6, §7, §11): every /api/admin endpoint by role, PATCH validation,
role and disabled changes applying at once, session revocation, the audit log, /admin page."""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

import pytest

from tests.support import body

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def signed_in(make_client, username: str):
    client = make_client()
    r = await client.login(username)
    assert r.code == 200, r.body
    return client


@pytest.fixture
def people(make_user, make_client, io_loop):
    """An admin, a teacher and two students, each with a signed-in client."""

    async def make():
        users, clients = {}, {}
        for name, role in (
            ("root", "admin"),
            ("tess", "teacher"),
            ("sam", "student"),
            ("sue", "student"),
        ):
            users[name] = await make_user(name, role)
            clients[name] = await signed_in(make_client, name)
        return users, clients

    return make


def endpoints(target_id: int) -> list[tuple[str, str, dict | None]]:
    return [
        ("GET", "/api/admin/users", None),
        ("PATCH", f"/api/admin/users/{target_id}", {"role": "teacher"}),
        ("DELETE", f"/api/admin/users/{target_id}/sessions", None),
        ("GET", "/api/admin/audit", None),
        ("GET", "/api/admin/audit?limit=5", None),
    ]


@pytest.mark.gen_test
async def test_every_admin_endpoint_by_role(people, make_client):
    users, clients = await people()
    sue = users["sue"].id
    for method, path, payload in endpoints(sue):
        r = await make_client().fetch(path, method, json_body=payload)
        assert r.code == 401, (method, path)
        assert body(r)["error"] == "not_authenticated"
        for name in ("sam", "tess"):
            r = await clients[name].fetch(path, method, json_body=payload)
            assert r.code == 403, (name, method, path)
            assert body(r) == {"error": "forbidden", "message": "Your account may not do this."}
    # Nothing changed through the refused calls.
    assert (await clients["sue"].fetch("/api/users/me")).code == 200
    assert body(await clients["sue"].fetch("/api/users/me"))["user"]["role"] == "student"
    root = clients["root"]
    r = await root.fetch("/api/admin/users")
    assert r.code == 200
    listed = body(r)["users"]
    assert [u["username"] for u in listed] == ["root", "tess", "sam", "sue"]
    for u in listed:
        assert set(u) == {"id", "username", "displayName", "role", "createdAt", "disabled"}
        assert u["disabled"] is False
    assert "$2b$" not in r.body.decode() and "bcrypt" not in r.body.decode()
    r = await root.fetch(f"/api/admin/users/{sue}", "PATCH", json_body={"role": "teacher"})
    assert r.code == 200
    assert body(r)["user"]["role"] == "teacher"
    r = await root.fetch(f"/api/admin/users/{sue}/sessions", "DELETE")
    assert r.code == 204
    r = await root.fetch("/api/admin/audit?limit=5")
    assert r.code == 200
    assert len(body(r)["events"]) == 5


@pytest.mark.gen_test
async def test_patch_validation(people):
    users, clients = await people()
    root, sue = clients["root"], users["sue"].id
    bad_bodies = [
        ({}, "role"),
        ({"role": None, "disabled": None}, "role"),
        ({"role": 1}, "role"),
        ({"role": ["admin"]}, "role"),
        ({"role": "superuser"}, "role"),
        ({"role": "ADMIN"}, "role"),
        ({"role": ""}, "role"),
        ({"disabled": "true"}, "disabled"),
        ({"disabled": 1}, "disabled"),
        ({"disabled": 0}, "disabled"),
        ({"role": "teacher", "disabled": "no"}, "disabled"),
    ]
    for payload, field_name in bad_bodies:
        r = await root.fetch(f"/api/admin/users/{sue}", "PATCH", json_body=payload)
        assert r.code == 400, payload
        assert body(r)["error"] == "bad_request"
        assert field_name in body(r)["fields"], payload
    for raw in (b"", b"[]", b"not json", b'"role"', b"{"):
        r = await root.fetch(f"/api/admin/users/{sue}", "PATCH", body=raw)
        assert r.code == 400, raw
        assert body(r)["error"] == "bad_request"
    r = await root.fetch(
        f"/api/admin/users/{sue}", "PATCH", body=b'{"role": "' + b"x" * 70000 + b'"}'
    )
    assert r.code == 413
    assert body(r)["error"] == "too_large"
    for target in ("999999", "0", "abc", "-1", "1.5", "9" * 40, quote("²"), quote("١"), "%20"):
        r = await root.fetch(f"/api/admin/users/{target}", "PATCH", json_body={"role": "teacher"})
        assert r.code == 404, target
        assert body(r)["error"] == "not_found"
        r = await root.fetch(f"/api/admin/users/{target}/sessions", "DELETE")
        assert r.code == 404, target
    # Nothing above changed sue.
    r = await root.fetch("/api/admin/users")
    sue_json = next(u for u in body(r)["users"] if u["id"] == sue)
    assert (sue_json["role"], sue_json["disabled"]) == ("student", False)


@pytest.mark.gen_test
async def test_admin_cannot_demote_or_disable_themselves(people, make_user, make_client):
    users, clients = await people()
    root, me = clients["root"], users["root"].id
    for payload in (
        {"role": "teacher"},
        {"disabled": True},
        {"role": "student", "disabled": False},
    ):
        r = await root.fetch(f"/api/admin/users/{me}", "PATCH", json_body=payload)
        assert r.code == 409, payload
        assert body(r)["error"] == "conflict"
    r = await root.fetch(f"/api/admin/users/{me}", "PATCH", json_body={"role": "admin"})
    assert r.code == 200  # a no-op is fine
    assert body(await root.fetch("/api/users/me"))["user"]["role"] == "admin"
    # Another admin can demote this one.
    await make_user("root2", "admin")
    other = await signed_in(make_client, "root2")
    r = await other.fetch(f"/api/admin/users/{me}", "PATCH", json_body={"role": "teacher"})
    assert r.code == 200
    assert (await root.fetch("/api/admin/users")).code == 403


@pytest.mark.gen_test
async def test_role_change_applies_on_the_very_next_request(people):
    users, clients = await people()
    root, sam = clients["root"], clients["sam"]
    assert (await sam.fetch("/api/admin/users")).code == 403
    r = await root.fetch(
        f"/api/admin/users/{users['sam'].id}", "PATCH", json_body={"role": "admin"}
    )
    assert r.code == 200
    assert (await sam.fetch("/api/admin/users")).code == 200  # same session, new role
    assert body(await sam.fetch("/api/users/me"))["user"]["role"] == "admin"
    r = await root.fetch(
        f"/api/admin/users/{users['sam'].id}", "PATCH", json_body={"role": "student"}
    )
    assert r.code == 200
    assert (await sam.fetch("/api/admin/users")).code == 403
    assert (await sam.fetch("/admin")).code == 403
    events = body(await root.fetch("/api/admin/audit"))["events"]
    changes = [e for e in events if e["event"] == "role_changed"]
    assert [(e["detail"]["old"], e["detail"]["new"]) for e in changes] == [
        ("admin", "student"),
        ("student", "admin"),
    ]
    assert all(e["username"] == "sam" and e["detail"]["by"] == "root" for e in changes)


@pytest.mark.gen_test
async def test_disabling_ends_every_session_and_blocks_login(people, make_client):
    users, clients = await people()
    root, sue_id = clients["root"], users["sue"].id
    second = await signed_in(make_client, "sue")
    r = await root.fetch(f"/api/admin/users/{sue_id}", "PATCH", json_body={"disabled": True})
    assert r.code == 200
    assert body(r)["user"]["disabled"] is True
    for client in (clients["sue"], second):
        assert (await client.fetch("/api/users/me")).code == 401
    r = await make_client().login("sue")
    assert r.code == 403
    assert body(r)["error"] == "account_disabled"
    # Disabling twice is a no-op; enabling lets sue sign in again.
    r = await root.fetch(f"/api/admin/users/{sue_id}", "PATCH", json_body={"disabled": True})
    assert r.code == 200
    r = await root.fetch(f"/api/admin/users/{sue_id}", "PATCH", json_body={"disabled": False})
    assert body(r)["user"]["disabled"] is False
    assert (await make_client().login("sue")).code == 200
    events = body(await root.fetch("/api/admin/audit"))["events"]
    kinds = [e["event"] for e in events if e["username"] == "sue"]
    assert kinds.count("user_disabled") == 1
    assert kinds.count("user_enabled") == 1
    disabled = next(e for e in events if e["event"] == "user_disabled")
    assert disabled["detail"] == {"by": "root", "sessions": 2}
    assert disabled["userId"] == sue_id


@pytest.mark.gen_test
async def test_admin_revokes_all_sessions_of_a_user(people, make_client):
    users, clients = await people()
    root = clients["root"]
    second = await signed_in(make_client, "sam")
    r = await root.fetch(f"/api/admin/users/{users['sam'].id}/sessions", "DELETE")
    assert r.code == 204
    assert r.body == b""
    for client in (clients["sam"], second):
        assert (await client.fetch("/api/users/me")).code == 401
    assert (await clients["sue"].fetch("/api/users/me")).code == 200
    assert (await make_client().login("sam")).code == 200  # not disabled: may sign in again
    r = await root.fetch(f"/api/admin/users/{users['sam'].id}/sessions", "DELETE", xsrf=False)
    assert r.code == 403
    assert body(r)["error"] == "xsrf"
    events = body(await root.fetch("/api/admin/audit"))["events"]
    revoked = next(e for e in events if e["event"] == "session_revoked")
    assert revoked["username"] == "sam"
    assert revoked["detail"] == {"by": "root", "sessions": 2}
    assert events[0]["event"] == "xsrf_rejected"
    assert events[0]["detail"] == {
        "path": f"/api/admin/users/{users['sam'].id}/sessions",
        "count": 1,
    }


@pytest.mark.gen_test
async def test_audit_limit_validation(people):
    _users, clients = await people()
    root = clients["root"]
    for raw in ("0", "-1", "501", "abc", "", "1.5", "1e3", "²", "٣", "9" * 30, "%00"):
        r = await root.fetch("/api/admin/audit?limit=" + quote(raw, safe="%"))
        assert r.code == 400, raw
        assert body(r)["error"] == "bad_request"
        assert "limit" in body(r)["fields"]
    r = await root.fetch("/api/admin/audit?limit=1")
    events = body(r)["events"]
    assert len(events) == 1
    assert set(events[0]) == {"at", "event", "userId", "username", "ip", "detail"}
    all_events = body(await root.fetch("/api/admin/audit?limit=500"))["events"]
    assert [e["event"] for e in all_events][:1] == [events[0]["event"]]
    assert [e["at"] for e in all_events] == sorted((e["at"] for e in all_events), reverse=True)
    default = body(await root.fetch("/api/admin/audit"))["events"]
    assert len(default) == len(all_events)  # fewer than the default 100 so far


async def admin_form(client, path: str, fields: dict):
    xsrf = await client.form_xsrf("/admin")
    return await client.fetch(
        path, "POST", body=urlencode({"_xsrf": xsrf, **fields}), headers=FORM, xsrf=False
    )


@pytest.mark.gen_test
async def test_admin_page_and_its_forms(people, make_client, make_user):
    users, clients = await people()
    root = clients["root"]
    r = await make_client().fetch("/admin")
    assert r.code == 302
    assert r.headers["Location"] == "/login?next=%2Fadmin"
    for name in ("sam", "tess"):
        r = await clients[name].fetch("/admin")
        assert r.code == 403
        assert "Your account may not do this." in r.body.decode()
    # A hostile display name and a hostile failed-login username reach the admin's page ...
    r = await make_client().register("xss", displayName='<img src=x onerror="alert(1)">')
    assert r.code == 201
    await make_client().login("<script>alert(1)</script>", "whatever it is")
    page = await root.fetch("/admin")
    assert page.code == 200
    assert page.headers["Cache-Control"] == "no-store"
    html = page.body.decode()
    # ... only as text.
    assert "<img" not in html and "<script>alert" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert re.findall(r'data-user="([^"]+)"', html) == ["root", "tess", "sam", "sue", "xss"]
    assert 'id="audit"' in html and "login_succeeded" in html
    sam_id = users["sam"].id
    # Role.
    r = await admin_form(root, f"/admin/users/{sam_id}", {"action": "role", "role": "teacher"})
    assert r.code == 302
    assert r.headers["Location"] == f"/admin?done=role&user={sam_id}"
    assert body(await clients["sam"].fetch("/api/users/me"))["user"]["role"] == "teacher"
    r = await admin_form(root, f"/admin/users/{sam_id}", {"action": "role", "role": "king"})
    assert r.code == 400
    assert "Unknown role." in r.body.decode()
    # Disable, then enable.
    r = await admin_form(root, f"/admin/users/{sam_id}", {"action": "disable"})
    assert r.headers["Location"] == f"/admin?done=disable&user={sam_id}"
    assert (await clients["sam"].fetch("/api/users/me")).code == 401
    assert "disabled" in (await root.fetch("/admin")).body.decode()
    r = await admin_form(root, f"/admin/users/{sam_id}", {"action": "enable"})
    assert r.headers["Location"] == f"/admin?done=enable&user={sam_id}"
    assert (await make_client().login("sam")).code == 200
    # Revoke.
    sue = clients["sue"]
    r = await admin_form(root, f"/admin/users/{users['sue'].id}", {"action": "revoke"})
    assert r.headers["Location"] == f"/admin?done=revoke&user={users['sue'].id}"
    assert (await sue.fetch("/api/users/me")).code == 401
    # Bad actions and targets: clear 4xx pages.
    r = await admin_form(root, f"/admin/users/{sam_id}", {"action": "explode"})
    assert r.code == 400
    r = await admin_form(root, "/admin/users/999999", {"action": "disable"})
    assert r.code == 404
    r = await admin_form(root, "/admin/users/abc", {"action": "disable"})
    assert r.code == 404
    r = await admin_form(root, f"/admin/users/{users['root'].id}", {"action": "disable"})
    assert r.code == 409
    # Forms without the XSRF field are refused and change nothing.
    r = await root.fetch(
        f"/admin/users/{sam_id}",
        "POST",
        body=urlencode({"action": "disable"}),
        headers=FORM,
        xsrf=False,
    )
    assert r.code == 403
    assert "XSRF" in r.body.decode()
    assert (await make_client().login("sam")).code == 200
    # A student posting the admin form with a valid XSRF token is refused too.
    r = await admin_form(clients["tess"], f"/admin/users/{sam_id}", {"action": "disable"})
    assert r.code == 403
    events = body(await root.fetch("/api/admin/audit"))["events"]
    kinds = {e["event"] for e in events}
    assert {"role_changed", "user_disabled", "user_enabled", "session_revoked"} <= kinds
    assert "xsrf_rejected" in kinds
