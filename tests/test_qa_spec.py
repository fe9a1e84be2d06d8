"""Black-box QA against SPEC.md: corners a careful user or client hits (real HTTP, no mocks)."""

from __future__ import annotations

import urllib.error
import urllib.request
from types import SimpleNamespace
from urllib.parse import quote

import pytest

from tests.conftest import body
from tests.support import free_port
from tests.test_headers import assert_security_headers


@pytest.mark.gen_test
async def test_head_answers_like_get_without_a_body(client, make_user):
    # Uptime monitors and load balancers probe with HEAD (RFC 9110: servers support GET+HEAD).
    health = await client.fetch("/healthz", "HEAD")
    assert health.code == 200
    assert health.body == b""
    assert health.headers["Cache-Control"] == "no-store"
    assert_security_headers(health, "HEAD /healthz")
    login = await client.fetch("/login", "HEAD")
    assert login.code == 200 and login.body == b""
    anonymous = await client.fetch("/api/users/me", "HEAD")
    assert anonymous.code == 401 and anonymous.body == b""
    page = await client.fetch("/dashboard", "HEAD")
    assert page.code == 302 and page.headers["Location"] == "/login?next=%2Fdashboard"
    await make_user("hana")
    assert (await client.login("hana")).code == 200
    me = await client.fetch("/api/users/me", "HEAD")
    assert me.code == 200 and me.body == b""
    # A route without GET still refuses HEAD.
    assert (await client.fetch("/api/auth/login", "HEAD")).code == 405
    socket = await client.fetch("/ws/chat", "HEAD")
    assert 400 <= socket.code < 500


@pytest.mark.gen_test
async def test_405_names_the_allowed_methods(client):
    logout = await client.fetch("/logout")
    assert logout.code == 405
    assert logout.headers["Allow"] == "POST"
    api = await client.fetch("/api/auth/login")
    assert api.code == 405 and body(api)["error"] == "method_not_allowed"
    assert api.headers["Allow"] == "POST"
    odd = await client.fetch("/api/users/me", "TRACE")
    assert odd.code == 405 and body(odd)["error"] == "method_not_allowed"
    assert odd.headers["Allow"] == "GET, HEAD"
    assert_security_headers(odd, "TRACE /api/users/me")


@pytest.mark.gen_test
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "TRACE"])
async def test_bare_api_path_is_a_json_404(client, method):
    response = await client.fetch("/api", method)
    assert response.code in (404, 405)
    assert response.headers["Content-Type"].startswith("application/json")
    assert body(response)["error"] in ("not_found", "method_not_allowed")
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.gen_test
async def test_next_with_non_ascii_is_percent_encoded(client, make_user):
    await make_user("ida")
    assert (await client.login("ida")).code == 200
    target = "/chat?room=é ☃"
    response = await client.fetch("/login?next=" + quote(target, safe=""))
    assert response.code == 302
    location = response.headers["Location"]
    assert location == "/chat?room=%C3%A9%20%E2%98%83"
    assert location.isascii()


@pytest.mark.gen_test
@pytest.mark.parametrize("target", ["/x\x7fy", "/a\x01b", "/\u00a0/evil.example"])
async def test_next_with_control_characters_is_never_a_500(client, make_user, target):
    await make_user("jan")
    assert (await client.login("jan")).code == 200
    response = await client.fetch("/login?next=" + quote(target, safe=""))
    assert response.code == 302
    location = response.headers["Location"]
    assert location.startswith("/") and not location.startswith("//")
    assert location.isascii() and location.isprintable() and " " not in location


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


def test_metrics_listener_sends_the_security_headers(live_server):
    # SPEC §10: every response, and no Server version; the metrics listener is no exception.
    port = free_port()
    live_server(args=["--metrics-port", str(port)])
    for path, status in (("/metrics", 200), ("/nope", 404)):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
                code, headers = resp.status, resp.headers
        except urllib.error.HTTPError as err:
            code, headers = err.code, err.headers
            err.close()
        assert code == status, path
        assert_security_headers(SimpleNamespace(headers=headers), path)
        assert headers["Cache-Control"] == "no-store", path


@pytest.fixture
def settings(settings, request):
    return settings.replace(**getattr(request, "param", {}))


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "settings", [{"cors_origins": ("https://app.example.org",)}], indirect=True
)
async def test_preflight_lists_only_the_route_s_methods(client, settings):
    response = await client.fetch(
        "/api/users/me",
        "OPTIONS",
        headers={"Origin": "https://app.example.org", "Access-Control-Request-Method": "GET"},
    )
    assert response.code == 204
    assert response.headers["Access-Control-Allow-Methods"] == "GET, HEAD"
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.org"
