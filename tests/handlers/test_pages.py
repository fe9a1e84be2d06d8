"""Server-rendered pages and their forms (SPEC §4, §5, §7): XSRF, redirects, escaping."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest

from plp.auth.service import INVALID_CREDENTIALS
from tests.support import PASSWORD, Client

FORM = re.compile(r"<form\b[^>]*>(.*?)</form>", re.I | re.S)
HOSTILE = "<script>alert('pwned')</script>\"'><img src=x onerror=alert(1)>"


class SafetyAudit(HTMLParser):
    """Walks a page's tags: inline scripts, on* handlers, javascript: URLs, forms sans XSRF."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.forms = 0
        self._form_has_xsrf: bool | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "script" and "src" not in values:
            self.problems.append("inline <script>")
        for name, value in values.items():
            if name.startswith("on"):
                self.problems.append(f"event handler attribute {name}= on <{tag}>")
            if name in ("href", "src", "action", "formaction") and value.strip().lower().startswith(
                "javascript:"
            ):
                self.problems.append(f"javascript: URL in {name}")
        if tag == "form":
            self.forms += 1
            # A GET form (search, filter) changes nothing, and a token would land in the URL.
            self._form_has_xsrf = values.get("method", "get").lower() == "get"
        if (
            tag == "input"
            and self._form_has_xsrf is not None
            and values.get("name") == "_xsrf"
            and values.get("type") == "hidden"
            and values.get("value")
        ):
            self._form_has_xsrf = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            if not self._form_has_xsrf:
                self.problems.append("a form without an _xsrf field")
            self._form_has_xsrf = None


def assert_safe_html(text: str, where: str) -> None:
    """No inline script, no event-handler attributes, no javascript: URLs, XSRF on forms."""
    audit = SafetyAudit()
    audit.feed(text)
    audit.close()
    assert audit.problems == [], where
    assert "<script>alert" not in text and "<img src=x" not in text, where


class PageClient(Client):
    """The conftest client; every page it fetches is checked for 5xx and unsafe HTML."""

    async def fetch(self, path, method="GET", **kwargs):
        response = await super().fetch(path, method, **kwargs)
        assert response.code < 500, (path, response.code, response.body[:300])
        content_type = response.headers.get("Content-Type", "")
        if content_type.startswith("text/html"):
            assert_safe_html(response.body.decode(), f"{method} {path} -> {response.code}")
        return response

    async def submit(self, path: str, data: dict[str, str], *, xsrf: bool = True, page: str = ""):
        """Post a form the way a browser does: `_xsrf` as a form field, no header."""
        fields = dict(data)
        if xsrf:
            fields["_xsrf"] = await self.form_xsrf(page or path.split("?")[0])
        return await self.fetch(
            path,
            "POST",
            body=urlencode(fields),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            xsrf=False,
        )


@pytest.fixture
def make_page_client(http_client, base_url):
    return lambda: PageClient(http_client, base_url)


@pytest.fixture
def visitor(make_page_client):
    """A signed-out visitor (a plain HTTP client; the Chromium tests live elsewhere)."""
    return make_page_client()


async def signed_in(make_page_client, make_user, name: str = "kid", role: str = "student"):
    await make_user(name, role=role)
    client = make_page_client()
    response = await client.submit("/login", {"username": name, "password": PASSWORD})
    assert response.code == 302, response.body
    return client


def location(response) -> str:
    return response.headers["Location"]


def text(response) -> str:
    return response.body.decode()


# --- public pages ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/login", "/register"])
@pytest.mark.gen_test
async def test_public_pages(visitor, path):
    response = await visitor.fetch(path)
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<!doctype html>" in text(response)
    assert "Cache-Control" not in response.headers or path == "/"


@pytest.mark.parametrize("path", ["/login", "/register"])
@pytest.mark.gen_test
async def test_forms_carry_xsrf(visitor, path):
    body = text(await visitor.fetch(path))
    forms = FORM.findall(body)
    assert forms
    assert all('name="_xsrf"' in form for form in forms)


@pytest.mark.gen_test
async def test_anonymous_pages_store_no_session(visitor, ctx):
    for path in ("/", "/login", "/register", "/nope"):
        await visitor.fetch(path)
    assert await ctx.store.count() == 0
    assert ctx.settings.cookie_name not in visitor.cookies


@pytest.mark.gen_test
async def test_signed_in_pages_carry_xsrf_and_are_not_cached(make_page_client, make_user):
    client = await signed_in(make_page_client, make_user, "boss", role="admin")
    for path in ("/", "/dashboard", "/sessions", "/account", "/admin"):
        response = await client.fetch(path)
        assert response.code == 200, path
        assert response.headers["Cache-Control"] == "no-store", path
        forms = [m.group(0) for m in FORM.finditer(text(response))]
        assert forms, path  # at least the sign-out form
        posts = [form for form in forms if 'method="get"' not in form.split(">", 1)[0]]
        assert all('name="_xsrf"' in form for form in posts), path
        assert all("_xsrf" not in form for form in forms if form not in posts), path


@pytest.mark.gen_test
async def test_unknown_page_is_404_html(visitor):
    response = await visitor.fetch("/no/such/page")
    assert response.code == 404
    assert response.headers["Content-Type"].startswith("text/html")
    response = await visitor.fetch("/no/such/page", "POST", body="", xsrf=False)
    assert response.code == 404


# --- logout ----------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_get_logout_is_405(make_page_client, make_user, ctx):
    client = await signed_in(make_page_client, make_user)
    response = await client.fetch("/logout")
    assert response.code == 405
    assert (await client.fetch("/dashboard")).code == 200  # still signed in
    assert await ctx.store.count() == 1


@pytest.mark.gen_test
async def test_post_logout(make_page_client, make_user, ctx):
    client = await signed_in(make_page_client, make_user)
    cookie = client.cookies[ctx.settings.cookie_name]
    response = await client.submit("/logout", {}, page="/dashboard")
    assert response.code == 302 and location(response) == "/login"
    assert response.headers["Clear-Site-Data"] == '"cookies", "storage"'
    assert ctx.settings.cookie_name not in client.cookies
    assert await ctx.store.count() == 0
    response = await client.fetch("/dashboard")
    assert response.code == 302 and location(response).startswith("/login?next=")
    replay = make_page_client()
    replay.cookies[ctx.settings.cookie_name] = cookie
    assert (await replay.fetch("/dashboard")).code == 302


@pytest.mark.gen_test
async def test_post_logout_without_xsrf_is_403_page(make_page_client, make_user, ctx):
    client = await signed_in(make_page_client, make_user)
    response = await client.submit("/logout", {}, xsrf=False)
    assert response.code == 403
    assert response.headers["Content-Type"].startswith("text/html")
    assert "XSRF" in text(response)
    assert await ctx.store.count() == 1


# --- XSRF on every form ----------------------------------------------------------------------

FORM_POSTS = [
    ("/login", {"username": "kid", "password": PASSWORD}),
    ("/register", {"username": "newkid", "password": PASSWORD}),
    ("/logout", {}),
    ("/sessions/revoke", {"session": "x"}),
    ("/sessions/logout-all", {}),
    ("/account", {"currentPassword": PASSWORD, "newPassword": "x" * 10, "confirmPassword": "x"}),
    ("/account/name", {"displayName": "Changed"}),
    ("/admin/users/1", {"action": "revoke"}),
]


@pytest.mark.parametrize("path, data", FORM_POSTS, ids=[p for p, _ in FORM_POSTS])
@pytest.mark.parametrize("how", ["missing", "wrong"])
@pytest.mark.gen_test
async def test_form_post_without_xsrf_is_403_page(
    make_page_client, make_user, ctx, path, data, how
):
    client = await signed_in(make_page_client, make_user, "boss", role="admin")
    if how == "wrong":
        data = {**data, "_xsrf": "2|00000000|" + "0" * 32 + "|1700000000"}
    response = await client.submit(path, data, xsrf=False)
    assert response.code == 403
    assert response.headers["Content-Type"].startswith("text/html")
    assert "XSRF" in text(response)
    assert await ctx.db.count_users() == 1
    assert await ctx.store.count() == 1
    assert (await client.fetch("/dashboard")).code == 200


# --- login form ------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_form_login_success_sets_cookie(visitor, make_user, ctx):
    await make_user("kid")
    response = await visitor.submit("/login", {"username": "KID", "password": PASSWORD})
    assert response.code == 302 and location(response) == "/dashboard"
    assert ctx.settings.cookie_name in visitor.cookies
    header = [h for h in response.headers.get_list("Set-Cookie") if "plp_session" in h][0]
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    assert "Domain" not in header
    dashboard = await visitor.fetch("/dashboard")
    assert dashboard.code == 200 and "Hello, Kid" in text(dashboard)


@pytest.mark.parametrize("username", ["kid", "nobody", "<script>x</script>", ""])
@pytest.mark.gen_test
async def test_failed_form_login_is_401_with_generic_message(visitor, make_user, ctx, username):
    await make_user("kid")
    response = await visitor.submit("/login", {"username": username, "password": "wrong pass 1"})
    assert response.code == 401
    body = text(response)
    assert html.escape(INVALID_CREDENTIALS) in body
    assert f'value="{html.escape(username)}"' in body  # typed username kept, escaped
    assert 'type="password"' in body and "wrong pass 1" not in body
    assert ctx.settings.cookie_name not in visitor.cookies
    assert await ctx.store.count() == 0


@pytest.mark.gen_test
async def test_login_replaces_an_existing_session(make_page_client, make_user, ctx):
    client = await signed_in(make_page_client, make_user)
    first = client.cookies[ctx.settings.cookie_name]
    await make_user("other")
    response = await client.submit(
        "/login?next=/sessions", {"username": "other", "password": PASSWORD}, page="/dashboard"
    )
    assert location(response) == "/sessions"
    assert response.code == 302
    assert client.cookies[ctx.settings.cookie_name] != first
    assert await ctx.store.count() == 1  # the carried session ended: no fixation
    assert "Hello, Other" in text(await client.fetch("/dashboard"))


@pytest.mark.gen_test
async def test_login_form_with_bad_bytes_and_oversize(visitor, make_user):
    await make_user("kid")
    token = await visitor.form_xsrf("/login")
    response = await visitor.fetch(
        "/login",
        "POST",
        body=b"_xsrf=" + token.encode() + b"&username=%FF%FE&password=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        xsrf=False,
    )
    assert 400 <= response.code < 500
    response = await visitor.fetch(
        "/login",
        "POST",
        body=urlencode({"_xsrf": token, "username": "kid", "password": "p" * 70_000}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        xsrf=False,
    )
    assert response.code == 413
    assert response.headers["Content-Type"].startswith("text/html")


# --- registration form -----------------------------------------------------------------------


@pytest.mark.gen_test
async def test_register_form_success(visitor, ctx):
    response = await visitor.submit(
        "/register", {"username": "New.Kid", "displayName": "New Kid", "password": PASSWORD}
    )
    assert response.code == 302 and location(response) == "/dashboard"
    user = (await ctx.db.get_credentials("new.kid"))[0]
    assert user.role == "student" and user.display_name == "New Kid"
    assert "Hello, New Kid" in text(await visitor.fetch("/dashboard"))


@pytest.mark.gen_test
async def test_register_form_role_field_ignored(visitor, ctx):
    response = await visitor.submit(
        "/register", {"username": "sneaky", "password": PASSWORD, "role": "admin"}
    )
    assert response.code == 302
    assert (await ctx.db.get_credentials("sneaky"))[0].role == "student"


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"username": HOSTILE, "password": PASSWORD}, "username", "3-32 characters"),
        ({"username": "ab", "password": PASSWORD}, "username", "3-32 characters"),
        ({"username": "kid", "password": "short"}, "password", "at least 8"),
        ({"username": "kid", "password": "password1"}, "password", "too common"),
        ({"username": "kid", "password": "p" * 257}, "password", "at most 256"),
        (
            {"username": "kid", "password": PASSWORD, "displayName": "d" * 65},
            "displayName",
            "At most 64",
        ),
        ({"username": "taken", "password": PASSWORD}, "username", "taken"),
    ],
)
@pytest.mark.gen_test
async def test_register_form_errors(visitor, make_user, ctx, data, field, message):
    await make_user("taken")
    data = {"displayName": HOSTILE, **data}
    response = await visitor.submit("/register", data)
    assert response.code in (400, 409)
    body = text(response)
    assert f'id="{field}-error"' in body
    error_span = re.search(rf'id="{field}-error">([^<]*)<', body).group(1)
    assert message in html.unescape(error_span)
    # The typed username and display name come back, escaped, in the inputs.
    for name in ("username", "displayName"):
        assert f'name="{name}"' in body
        if len(data[name]) <= 64:
            assert f'value="{html.escape(data[name])}"' in body, name
    assert data["password"] not in body or len(data["password"]) < 8
    assert await ctx.db.count_users() == 1
    assert ctx.settings.cookie_name not in visitor.cookies


@pytest.mark.gen_test
async def test_register_page_redirects_when_signed_in(make_page_client, make_user):
    client = await signed_in(make_page_client, make_user)
    response = await client.fetch("/register")
    assert response.code == 302 and location(response) == "/dashboard"


# --- @authenticated, next, roles -------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/dashboard", "/sessions", "/account", "/admin", "/dashboard?tab=1&x=%3Cy%3E"]
)
@pytest.mark.gen_test
async def test_authenticated_redirects_to_login(visitor, path):
    response = await visitor.fetch(path)
    assert response.code == 302
    target = urlsplit(location(response))
    assert target.path == "/login"
    assert parse_qs(target.query)["next"] == [path]


@pytest.mark.parametrize(
    "path, data",
    [
        ("/sessions/revoke", {"session": "x"}),
        ("/sessions/logout-all", {}),
        ("/account", {"currentPassword": "x", "newPassword": "y", "confirmPassword": "y"}),
        ("/admin/users/1", {"action": "revoke"}),
    ],
)
@pytest.mark.gen_test
async def test_signed_out_form_posts_refused(visitor, path, data):
    response = await visitor.submit(path, data, page="/login")
    assert response.code == 401
    assert response.headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    "next_value, expected",
    [
        ("/sessions", "/sessions"),
        ("/account?done=x", "/account?done=x"),
        ("/x", "/x"),
        ("//evil.example", "/dashboard"),
        ("//evil.example/x", "/dashboard"),
        ("/\\evil.example", "/dashboard"),
        ("\\\\evil.example", "/dashboard"),
        ("/\t/evil.example", "/dashboard"),
        ("https://evil.example", "/dashboard"),
        ("http:/evil.example", "/dashboard"),
        ("javascript:alert(1)", "/dashboard"),
        ("JavaScript:alert(1)", "/dashboard"),
        ("data:text/html,x", "/dashboard"),
        ("evil.example", "/dashboard"),
        ("", "/dashboard"),
        ("/x\r\nSet-Cookie: evil=1", "/dashboard"),
        ("/x\nLocation: //evil", "/dashboard"),
        ("/%0d%0aSet-Cookie:evil=1", "/%0d%0aSet-Cookie:evil=1"),  # inert: stays encoded
        ("/%2F%2Fevil.example", "/%2F%2Fevil.example"),  # a path on this site, not a host
        ("/" + "a" * 3000, "/dashboard"),
    ],
)
@pytest.mark.gen_test
async def test_next_rule(visitor, make_user, next_value, expected):
    await make_user("kid")
    response = await visitor.submit(
        "/login?" + urlencode({"next": next_value}),
        {"username": "kid", "password": PASSWORD},
        page="/login",
    )
    assert response.code == 302
    assert location(response) == expected
    assert not any("evil" in value for value in response.headers.get_list("Set-Cookie"))
    # The login page's form carries the same cleaned value.
    page = text(
        await make_page_client_of(visitor).fetch("/login?" + urlencode({"next": next_value}))
    )
    action = re.search(r'<form method="post" action="([^"]+)"', page).group(1)
    carried = parse_qs(urlsplit(html.unescape(action)).query)["next"][0]
    assert carried == expected


def make_page_client_of(client: PageClient) -> PageClient:
    return PageClient(client.http, client.base_url)


@pytest.mark.parametrize("next_value", ["//evil.example", "https://evil.example", "/sessions"])
@pytest.mark.gen_test
async def test_next_rule_when_already_signed_in(make_page_client, make_user, next_value):
    client = await signed_in(make_page_client, make_user)
    response = await client.fetch("/login?" + urlencode({"next": next_value}))
    assert response.code == 302
    assert location(response) == (next_value if next_value == "/sessions" else "/dashboard")


@pytest.mark.gen_test
async def test_login_round_trip_through_next(visitor, make_user):
    await make_user("kid")
    response = await visitor.fetch("/sessions")
    login_url = location(response)
    response = await visitor.submit(
        login_url, {"username": "kid", "password": PASSWORD}, page="/login"
    )
    assert location(response) == "/sessions"


@pytest.mark.parametrize("role", ["student", "teacher"])
@pytest.mark.gen_test
async def test_admin_page_forbidden_for_non_admins(make_page_client, make_user, role):
    client = await signed_in(make_page_client, make_user, "someone", role=role)
    response = await client.fetch("/admin")
    assert response.code == 403
    assert response.headers["Content-Type"].startswith("text/html")
    assert "403" in text(response)
    response = await client.submit("/admin/users/1", {"action": "revoke"}, page="/dashboard")
    assert response.code == 403


@pytest.mark.gen_test
async def test_role_change_applies_to_next_page(make_page_client, make_user, ctx):
    client = await signed_in(make_page_client, make_user, "someone", role="student")
    assert (await client.fetch("/admin")).code == 403
    user = (await ctx.db.get_credentials("someone"))[0]
    await ctx.db.update_user(user.id, role="admin")
    assert (await client.fetch("/admin")).code == 200


# --- escaping of user content on every page --------------------------------------------------


@pytest.mark.gen_test
async def test_user_content_escaped_everywhere(make_page_client, make_user, ctx):
    # Attacker-controlled text: a display name, a user agent, and a username tried at login.
    kid = make_page_client()
    response = await kid.submit(
        "/register", {"username": "kid", "displayName": HOSTILE[:64], "password": PASSWORD}
    )
    assert response.code == 302
    kid_agent = make_page_client()
    agent = "<script>alert('ua')</script>"
    login_form = await kid_agent.form_xsrf("/login")
    response = await kid_agent.fetch(
        "/login",
        "POST",
        body=urlencode({"_xsrf": login_form, "username": "kid", "password": PASSWORD}),
        headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": agent},
        xsrf=False,
    )
    assert response.code == 302
    await make_page_client().submit("/login", {"username": HOSTILE[:60], "password": "nope nope"})
    admin = await signed_in(make_page_client, make_user, "boss", role="admin")
    shown_name = html.escape(HOSTILE[:64])
    pages = [
        (kid, "/", True),
        (kid, "/dashboard", True),
        (kid, "/sessions", True),
        (kid, "/account", True),
        (admin, "/admin", True),
    ]
    for client, path, shows_name in pages:
        response = await client.fetch(path)
        assert response.code == 200, path
        if shows_name:
            assert shown_name in text(response), path
    sessions = text(await kid.fetch("/sessions"))
    assert html.escape(agent) in sessions
    admin_page = text(await admin.fetch("/admin"))
    assert "<script>alert" not in admin_page


@pytest.mark.gen_test
async def test_error_pages_escape_and_have_no_inline_script(visitor):
    response = await visitor.fetch("/<script>alert(1)</script>")
    assert response.code == 404
    response = await visitor.fetch("/login?next=" + "%3Cscript%3Ealert(1)%3C/script%3E")
    assert response.code == 200


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


# --- issue 12: display name, admin search, paging, audit filter, confirmations ---------------


def user_rows(page: str) -> list[str]:
    """The usernames in the /admin users table, in order."""
    return re.findall(r'<tr data-user="([^"]+)"', page)


@pytest.mark.gen_test
async def test_display_name_change_on_account_page(make_page_client, make_user, ctx):
    client = await signed_in(make_page_client, make_user, "kid", role="student")
    response = await client.submit("/account/name", {"displayName": "Kid Rocket"}, page="/account")
    assert response.code == 302 and location(response) == "/account?done=name"
    page = text(await client.fetch("/account?done=name"))
    assert "Display name changed." in page and 'value="Kid Rocket"' in page
    assert (await ctx.db.get_credentials("kid"))[0].display_name == "Kid Rocket"
    assert "Kid Rocket" in text(await client.fetch("/dashboard"))
    # Blank is the username, as at registration.
    response = await client.submit("/account/name", {"displayName": "   "}, page="/account")
    assert response.code == 302
    assert (await ctx.db.get_credentials("kid"))[0].display_name == "kid"


@pytest.mark.parametrize(
    "value, problem",
    [("x" * 65, "At most 64 characters."), ("bad\u2028line", "Only printable characters")],
)
@pytest.mark.gen_test
async def test_bad_display_name_is_shown_at_its_field(
    make_page_client, make_user, ctx, value, problem
):
    client = await signed_in(make_page_client, make_user, "kid", role="student")
    response = await client.submit("/account/name", {"displayName": value}, page="/account")
    assert response.code == 400
    page = text(response)
    assert problem in page
    field = re.search(r'<input id="displayName"[^>]*>', page).group(0)
    assert 'aria-invalid="true"' in field
    assert "displayName-error" in field and 'id="displayName-error"' in page
    assert (await ctx.db.get_credentials("kid"))[0].display_name == "Kid"


@pytest.mark.gen_test
async def test_register_errors_are_tied_to_their_fields(visitor):
    response = await visitor.submit("/register", {"username": "a", "password": "short"})
    assert response.code == 400
    page = text(response)
    assert "Please correct: Username, Password." in page
    for name in ("username", "password"):
        field = re.search(rf'<input id="{name}"[^>]*>', page).group(0)
        assert 'aria-invalid="true"' in field, name
        assert f"{name}-error" in field, name
        assert f'id="{name}-error"' in page, name
    display = re.search(r'<input id="displayName"[^>]*>', page).group(0)
    assert "aria-invalid" not in display


@pytest.mark.gen_test
async def test_admin_user_search_and_paging(make_page_client, make_user, ctx):
    admin = await signed_in(make_page_client, make_user, "boss", role="admin")
    for n in range(30):
        await make_user(f"kid{n:02d}")
    first = text(await admin.fetch("/admin"))
    assert user_rows(first)[:3] == ["boss", "kid00", "kid01"] and len(user_rows(first)) == 25
    assert "31 users" in first and "page 1 of 2" in first
    assert 'href="/admin?upage=2"' in first
    second = text(await admin.fetch("/admin?upage=2"))
    assert user_rows(second) == [f"kid{n:02d}" for n in range(24, 30)]
    # A page past the end, or nonsense, is still a page.
    assert user_rows(text(await admin.fetch("/admin?upage=99"))) == user_rows(second)
    assert user_rows(text(await admin.fetch("/admin?upage=-1"))) == user_rows(first)
    # Search matches username or display name, any case.
    assert user_rows(text(await admin.fetch("/admin?q=KID1"))) == [f"kid1{n}" for n in range(10)]
    kid = (await ctx.db.get_credentials("kid07"))[0]
    await ctx.db.update_user(kid.id, display_name="Ada Lovelace")
    found = text(await admin.fetch("/admin?q=lovelace"))
    assert user_rows(found) == ["kid07"] and "1 user matching" in found
    assert user_rows(text(await admin.fetch("/admin?q=nobody-at-all"))) == []


@pytest.mark.gen_test
async def test_admin_audit_filter_and_paging(make_page_client, make_user, ctx):
    admin = await signed_in(make_page_client, make_user, "boss", role="admin")
    for n in range(60):
        await ctx.db.add_audit(
            "login_failed", user_id=None, username=f"kid{n % 2}", ip="10.0.0.1", detail={}
        )
    await ctx.db.add_audit(
        "xsrf_rejected",
        user_id=None,
        username=None,
        ip="10.0.0.2",
        detail={"path": "/api/auth/login", "count": 12},
    )
    page = text(await admin.fetch("/admin"))
    assert "path /api/auth/login, 12 times" in page
    assert '<option value="login_failed"' in page
    audit = page[page.index('id="audit"') :]
    assert audit.count("<tr>") == 50 + 1  # 50 rows and the header
    assert "Older events" in page
    older = text(await admin.fetch("/admin?apage=2"))
    rows = older[older.index('id="audit"') :].count("<tr>") - 1
    assert rows == 62 - 50  # 60 + the xsrf row + boss's login
    only = text(await admin.fetch("/admin?event=xsrf_rejected"))
    assert only[only.index('id="audit"') :].count("<tr>") - 1 == 1
    kid1 = text(await admin.fetch("/admin?event=login_failed&who=KID1"))
    assert kid1[kid1.index('id="audit"') :].count("<tr>") - 1 == 30
    none = text(await admin.fetch("/admin?event=nothing_like_this"))
    assert 'id="audit-empty"' in none


@pytest.mark.gen_test
async def test_admin_actions_name_the_user_and_disable_asks_first(make_page_client, make_user, ctx):
    admin = await signed_in(make_page_client, make_user, "boss", role="admin")
    await make_user("kid1")
    kid = (await ctx.db.get_credentials("kid1"))[0]
    response = await admin.submit(
        f"/admin/users/{kid.id}", {"action": "role", "role": "teacher"}, page="/admin"
    )
    assert response.code == 302
    done = text(await admin.fetch(location(response)))
    assert "Role of kid1 changed to teacher." in done
    # Disable is a link to a page that names the user; only its POST disables.
    page = text(await admin.fetch("/admin"))
    assert f'href="/admin/users/{kid.id}/disable"' in page
    confirm = await admin.fetch(f"/admin/users/{kid.id}/disable")
    assert confirm.code == 200 and "Disable kid1?" in text(confirm)
    assert not (await ctx.db.get_user(kid.id)).disabled
    response = await admin.submit(
        f"/admin/users/{kid.id}", {"action": "disable"}, page=f"/admin/users/{kid.id}/disable"
    )
    assert "kid1 is disabled" in text(await admin.fetch(location(response)))
    assert (await ctx.db.get_user(kid.id)).disabled
    assert (await admin.fetch("/admin/users/999/disable")).code == 404


@pytest.mark.gen_test
async def test_admin_disabling_themself_is_refused_on_the_admin_page(
    make_page_client, make_user, ctx
):
    admin = await signed_in(make_page_client, make_user, "boss", role="admin")
    me = (await ctx.db.get_credentials("boss"))[0]
    page = text(await admin.fetch("/admin"))
    assert f'href="/admin/users/{me.id}/disable"' not in page
    confirm = await admin.fetch(f"/admin/users/{me.id}/disable")
    assert confirm.code == 302
    assert "cannot disable your own account" in text(await admin.fetch(location(confirm)))
    response = await admin.submit(f"/admin/users/{me.id}", {"action": "disable"}, page="/admin")
    assert response.code == 409
    refused = text(response)
    assert "<h1>Administration</h1>" in refused and 'id="form-error"' in refused
    assert "cannot disable or demote your own account" in refused
    assert not (await ctx.db.get_user(me.id)).disabled


@pytest.mark.parametrize(
    "role, hint",
    [("student", "ask your teacher"), ("teacher", "ask an administrator")],
)
@pytest.mark.gen_test
async def test_forbidden_page_hint_depends_on_role(make_page_client, make_user, role, hint):
    client = await signed_in(make_page_client, make_user, "someone", role=role)
    response = await client.fetch("/admin")
    assert response.code == 403 and hint in text(response)
    if role == "teacher":
        assert "ask your teacher" not in text(response)
