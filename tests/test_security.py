"""Security headers, caching and CORS on every kind of response (SPEC §10)."""

from __future__ import annotations

import pytest

from tests.support import body
from tests.support.headers import ALLOWED, assert_security_headers

FOREIGN = "https://evil.example.net"


def assert_no_cors(response) -> None:
    for name in response.headers:
        assert not name.lower().startswith("access-control-"), name


async def signed_in(make_client, make_user, name: str = "alice"):
    await make_user(name)
    client = make_client()
    assert (await client.login(name)).code == 200
    return client


@pytest.mark.gen_test
async def test_headers_on_pages_api_static_health(client, make_client, make_user):
    for path in ("/", "/login", "/register", "/api/auth/csrf", "/healthz", "/static/style.css"):
        r = await client.fetch(path)
        assert r.code == 200, path
        assert_security_headers(r, path)
    r = await client.fetch("/healthz")
    assert r.headers["Cache-Control"] == "no-store"
    assert body(r) == {"status": "ok"}
    r = await client.fetch("/api/auth/csrf")
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Content-Type"].startswith("application/json")
    r = await client.fetch("/static/style.css")
    assert "no-store" not in r.headers.get("Cache-Control", "")  # public, cacheable
    user = await signed_in(make_client, make_user)
    for path in ("/", "/dashboard", "/sessions", "/account", "/api/users/me", "/api/sessions"):
        r = await user.fetch(path)
        assert r.code == 200, path
        assert_security_headers(r, path)
        assert r.headers["Cache-Control"] == "no-store", path


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", [{"login_failures_per_account": 1}], indirect=True)
async def test_headers_on_every_error(client, make_client, make_user):
    user = await signed_in(make_client, make_user)
    big = b'{"a": "' + b"x" * 70000 + b'"}'
    cases = [
        (400, client, "/api/auth/login", "POST", b"{not json", "bad_request"),
        (401, client, "/api/users/me", "GET", None, "not_authenticated"),
        (403, client, "/api/auth/login", "POST_NO_XSRF", b"{}", "xsrf"),
        (403, user, "/api/admin/users", "GET", None, "forbidden"),
        (404, client, "/api/nothing/here", "GET", None, "not_found"),
        (404, user, "/api/sessions/nope", "DELETE", None, "not_found"),
        (405, client, "/api/auth/login", "GET", None, "method_not_allowed"),
        (413, client, "/api/auth/login", "POST", big, "too_large"),
    ]
    for status, who, path, method, payload, code in cases:
        xsrf = method != "POST_NO_XSRF"
        r = await who.fetch(path, method.replace("_NO_XSRF", ""), body=payload, xsrf=xsrf)
        assert r.code == status, (path, method, r.body)
        assert body(r)["error"] == code, (path, r.body)
        assert_security_headers(r, f"{status} {path}")
        assert r.headers["Cache-Control"] == "no-store", path
        assert r.headers["Content-Type"].startswith("application/json"), path
    assert (await client.login("alice", "wrong password 1")).code == 401
    r = await client.login("alice", "wrong password 2")
    assert r.code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert_security_headers(r, "429")
    assert r.headers["Cache-Control"] == "no-store"
    # Pages: HTML errors carry the same headers.
    page_cases = [
        (404, client, "/no/such/page", "GET"),
        (404, client, "/static/missing.css", "GET"),
        (405, client, "/logout", "GET"),
        (403, client, "/logout", "POST_NO_XSRF"),
        (403, user, "/admin", "GET"),
        (413, client, "/login", "POST_BIG"),
        (429, client, "/login", "POST_LOGIN"),
    ]
    for status, who, path, method in page_cases:
        if method == "POST_BIG":
            r = await who.fetch(path, "POST", body=b"username=" + b"x" * 70000)
        elif method == "POST_LOGIN":
            r = await who.fetch(path, "POST", body=b"username=alice&password=whatever1")
        else:
            r = await who.fetch(path, method.replace("_NO_XSRF", ""), xsrf=method == "GET")
        assert r.code == status, (path, method, r.body[:300])
        assert_security_headers(r, f"page {status} {path}")
    # A signed-in user's error pages are not cached either.
    r = await user.fetch("/admin")
    assert r.headers["Cache-Control"] == "no-store"
    r = await user.fetch("/no/such/page")
    assert r.headers["Cache-Control"] == "no-store"


@pytest.mark.gen_test
async def test_clear_site_data_on_logout(make_client, make_user):
    for path, how in (
        ("/api/auth/logout", "api"),
        ("/api/auth/logout-all", "api"),
        ("/logout", "form"),
    ):
        user = await signed_in(make_client, make_user, f"user-{how}-{len(path)}")
        if how == "form":
            xsrf = await user.form_xsrf("/dashboard")
            r = await user.fetch(
                path,
                "POST",
                body=f"_xsrf={xsrf}",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                xsrf=False,
            )
            assert r.code == 302
        else:
            r = await user.fetch(path, "POST")
            assert r.code == 200
        assert r.headers["Clear-Site-Data"] == '"cookies", "storage"', path
        assert_security_headers(r, path)
        assert "plp_session" not in user.cookies
    # Other answers never clear site data.
    r = await make_client().fetch("/")
    assert "Clear-Site-Data" not in r.headers


PRODUCTION = {"env": "production", "trust_proxy": True}


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", [PRODUCTION], indirect=True)
async def test_hsts_in_production_on_https_only(client, make_user, make_client):
    https = {"X-Forwarded-Proto": "https"}
    paths = ["/", "/login", "/healthz", "/api/users/me", "/no/such/page", "/static/style.css"]
    for path in paths:
        r = await client.fetch(path, headers=https)
        hsts = r.headers.get("Strict-Transport-Security", "")
        assert hsts.startswith("max-age="), (path, r.code)
        assert int(hsts.split("=")[1].split(";")[0]) >= 15552000  # at least 180 days
        r = await client.fetch(path, headers={"X-Forwarded-Proto": "http"})
        assert "Strict-Transport-Security" not in r.headers, path
        r = await client.fetch(path)
        assert "Strict-Transport-Security" not in r.headers, path
    # The production cookie is __Host- prefixed and Secure.
    await make_user("alice")
    r = await make_client().fetch(
        "/api/auth/login",
        "POST",
        json_body={"username": "alice", "password": "correct horse battery"},
        headers=https,
    )
    assert r.code == 200
    cookie = next(c for c in r.headers.get_list("Set-Cookie") if "plp_session" in c)
    assert cookie.startswith("__Host-plp_session=")
    low = cookie.lower()
    assert "secure" in low and "httponly" in low and "samesite=lax" in low and "path=/" in low
    assert "domain" not in low


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "settings", [{"env": "development", "trust_proxy": True}, {"env": "production"}], indirect=True
)
async def test_no_hsts_without_production_and_trusted_https(client, settings):
    # Development never sends HSTS; production without trust-proxy ignores a forged header.
    r = await client.fetch("/", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in r.headers


CORS = {"cors_origins": (ALLOWED,)}


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", [CORS], indirect=True)
async def test_cors_preflight_from_an_allowed_origin(client, make_client, make_user):
    r = await client.fetch(
        "/api/auth/login",
        "OPTIONS",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-xsrftoken",
        },
    )
    assert r.code == 204
    assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in [v.strip() for v in ",".join(r.headers.get_list("Vary")).split(",")]
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    allowed_headers = r.headers["Access-Control-Allow-Headers"].lower()
    assert "x-xsrftoken" in allowed_headers and "content-type" in allowed_headers
    assert_security_headers(r, "preflight")
    # The actual request from that origin gets the same exact-origin answer.
    user = await signed_in(make_client, make_user)
    r = await user.fetch("/api/users/me", headers={"Origin": ALLOWED})
    assert r.code == 200
    assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    # Errors to that origin are readable too, so its scripts can show the message.
    r = await make_client().fetch("/api/users/me", headers={"Origin": ALLOWED})
    assert r.code == 401
    assert r.headers["Access-Control-Allow-Origin"] == ALLOWED


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", [CORS], indirect=True)
async def test_cors_refuses_foreign_origins(client, make_client, make_user):
    for origin in (
        FOREIGN,
        "null",
        ALLOWED + ".evil.net",
        "http://app.example.org",
        ALLOWED + ":444",
    ):
        r = await client.fetch(
            "/api/auth/login",
            "OPTIONS",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        assert r.code == 403, origin
        assert_no_cors(r)
        assert_security_headers(r, "foreign preflight")
    user = await signed_in(make_client, make_user)
    r = await user.fetch("/api/users/me", headers={"Origin": FOREIGN})
    assert_no_cors(r)
    r = await client.fetch("/api/auth/login", "OPTIONS")  # no Origin: not a preflight
    assert r.code == 403
    assert_no_cors(r)


@pytest.mark.gen_test
async def test_no_cors_at_all_by_default(client, make_client, make_user):
    for origin in (ALLOWED, FOREIGN):
        r = await client.fetch(
            "/api/auth/login",
            "OPTIONS",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        assert r.code == 403
        assert_no_cors(r)
        assert "Vary" not in r.headers
    user = await signed_in(make_client, make_user)
    for path in ("/api/users/me", "/", "/healthz", "/static/style.css"):
        r = await user.fetch(path, headers={"Origin": FOREIGN})
        assert_no_cors(r)
        assert r.headers.get("Access-Control-Allow-Origin") != "*"


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
