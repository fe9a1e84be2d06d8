"""Shared fixtures: a real plp app served by pytest-tornado, clients for it, live servers, a
browser. Helpers that are not fixtures live in tests/support/."""

from __future__ import annotations

from typing import Any

import pytest

from plp.app import make_app
from plp.config import Settings
from plp.context import make_context
from plp.storage.sqlite import SQLiteDatabase
from tests.support import (
    PASSWORD,
    TEST_SECRET,
    Client,
    Clock,
    LiveServer,
    chromium_available,
    launch_browser,
    need,
)

pytest_plugins = ["tests.support.hygiene"]  # log hygiene across the whole run


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(tmp_path, request) -> Settings:
    """SQLite in tmp_path, cheap bcrypt, a fixed secret. A test changes fields by indirect
    parametrization: `@pytest.mark.parametrize("settings", [{"trust_proxy": True}],
    indirect=True)`."""
    base = Settings(
        data_dir=str(tmp_path),
        db=str(tmp_path / "test.sqlite3"),
        bcrypt_rounds=4,
        session_secret=TEST_SECRET,
    )
    return base.replace(**getattr(request, "param", {}))


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
def signed_in(make_user, session_cookie, make_client):
    """A cookie-keeping client signed in as a fresh user of the given role."""

    async def make(username: str, role: str = "student"):
        user = await make_user(username, role)
        cookie = await session_cookie(user.id)
        name, value = cookie.split("=", 1)
        client = make_client()
        client.cookies[name] = value
        client.user = user
        return client

    return make


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
    need(chromium_available(), "Chromium not installed at /usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover
        need(False, "playwright not installed")
    with sync_playwright() as playwright:
        instance = launch_browser(playwright)
        yield instance
        instance.close()
