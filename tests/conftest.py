"""Shared fixtures: a real plp app served by pytest-tornado, and helpers for real HTTP calls."""

from __future__ import annotations

import json
import re
import time
from http.cookies import SimpleCookie
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPResponse

from plp.app import make_app
from plp.config import Settings
from plp.context import make_context
from plp.storage.sqlite import SQLiteDatabase

TEST_SECRET = "test-secret-" + "x" * 40
PASSWORD = "correct horse battery"
pytest_plugins = ["tests.conftest_audit"]  # log hygiene across the session


class Clock:
    """A controllable clock for expiry tests: starts at real time, moves only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        data_dir=str(tmp_path),
        db=str(tmp_path / "test.sqlite3"),
        bcrypt_rounds=4,
        session_secret=TEST_SECRET,
    )


@pytest.fixture
def db(settings, io_loop):
    database = SQLiteDatabase(settings.db_url)
    io_loop.run_sync(database.migrate)
    yield database
    io_loop.run_sync(database.close)


@pytest.fixture
def ctx(settings, db, clock):
    context = make_context(settings, db=db, clock=clock)
    yield context
    context.hasher.close()


@pytest.fixture
def app(ctx):
    return make_app(ctx)


class Client:
    """A cookie-keeping HTTP client over pytest-tornado's real AsyncHTTPClient."""

    def __init__(self, http_client: Any, base_url: str) -> None:
        self.http = http_client
        self.base_url = base_url
        self.cookies: dict[str, str] = {}

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def _remember(self, response: HTTPResponse) -> None:
        for header in response.headers.get_list("Set-Cookie"):
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                expired = morsel["max-age"] == "0" or (
                    morsel["expires"] and "1970" in morsel["expires"]
                )
                if expired or morsel.value == "":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    async def fetch(
        self,
        path: str,
        method: str = "GET",
        *,
        body: Any = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        xsrf: bool = True,
        **kwargs: Any,
    ) -> HTTPResponse:
        all_headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body)
            all_headers.setdefault("Content-Type", "application/json")
        if method in ("POST", "PUT", "PATCH", "DELETE") and xsrf:
            if "_xsrf" not in self.cookies:
                await self.fetch("/api/auth/csrf")
            all_headers.setdefault("X-XSRFToken", self.cookies["_xsrf"])
        if self.cookies:
            all_headers.setdefault("Cookie", self.cookie_header())
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = ""
        try:
            response = await self.http.fetch(
                self.base_url + path,
                method=method,
                body=body,
                headers=all_headers,
                follow_redirects=False,
                raise_error=False,
                allow_nonstandard_methods=True,
                **kwargs,
            )
        except HTTPClientError as exc:  # pragma: no cover - raise_error=False
            response = exc.response
        self._remember(response)
        return response

    async def register(self, username: str, password: str = PASSWORD, **extra: Any) -> Any:
        return await self.fetch(
            "/api/auth/register",
            "POST",
            json_body={"username": username, "password": password, **extra},
        )

    async def login(self, username: str, password: str = PASSWORD) -> HTTPResponse:
        return await self.fetch(
            "/api/auth/login", "POST", json_body={"username": username, "password": password}
        )

    async def form_xsrf(self, path: str) -> str:
        page = await self.fetch(path)
        match = re.search(r'name="_xsrf" value="([^"]+)"', page.body.decode())
        assert match, f"no _xsrf field on {path}"
        return match.group(1)


def body(response: HTTPResponse) -> Any:
    return json.loads(response.body)


@pytest.fixture
def client(http_client, base_url) -> Client:
    return Client(http_client, base_url)


@pytest.fixture
def make_client(http_client, base_url):
    return lambda: Client(http_client, base_url)


@pytest.fixture
def make_user(ctx, io_loop):
    """Create a user straight in the database (for tests not about registration)."""

    async def create(username: str, role: str = "student", password: str = PASSWORD):
        hashed = await ctx.hasher.hash(password)
        return await ctx.db.create_user(username, username.title(), role, hashed)

    return create


@pytest.fixture
def session_cookie(ctx):
    """A signed session cookie header for a user, written to the store directly."""

    async def make(user_id: int) -> str:
        token, _ = await ctx.store.create(user_id, ip="127.0.0.1", user_agent="test")
        return f"{ctx.settings.cookie_name}={ctx.signer.sign(token)}"

    return make


@pytest.fixture
def live_server(tmp_path):
    """A real `python run.py` process (development mode) on a free port."""
    from tests.support import LiveServer

    servers: list[LiveServer] = []

    def start(**kwargs: Any) -> LiveServer:
        server = LiveServer(tmp_path / f"data{len(servers)}", **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def browser():
    """Headless Debian Chromium driven by Playwright (sync API; use in plain tests).

    Per test: Playwright's sync API keeps its event loop marked running while it is open,
    which would break every later pytest-tornado test if this lived for the whole session.
    """
    from tests.support import chromium_available, launch_browser, need

    need(chromium_available(), "Chromium not installed at /usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover
        need(False, "playwright not installed")
    with sync_playwright() as playwright:
        instance = launch_browser(playwright)
        yield instance
        instance.close()
