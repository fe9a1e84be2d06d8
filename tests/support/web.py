"""Synchronous clients for a live plp process: HTTP with cookies, a chat socket on a private
event loop, `run.py` to completion, and a metrics scrape. For plain (non-async) tests."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import ssl
import subprocess
import sys
import urllib.request
from http.cookies import SimpleCookie
from typing import Any

from tests.support.live import LIVE_SECRET, ROOT, LiveServer

LIVE_PASSWORD = "a long enough passphrase"


class Web:
    """A small synchronous cookie-keeping client for a live server (http or https)."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.cookies: dict[str, str] = {}
        self.set_cookie_headers: list[str] = []

    def connection(self) -> http.client.HTTPConnection:
        if self.server.scheme == "https":
            return http.client.HTTPSConnection(
                "127.0.0.1",
                self.server.port,
                timeout=30,
                context=ssl._create_unverified_context(),
            )
        return http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)

    def request(
        self,
        path: str,
        method: str = "GET",
        body: Any = None,
        headers: dict[str, str] | None = None,
        conn: http.client.HTTPConnection | None = None,
    ) -> tuple[int, http.client.HTTPMessage, Any]:
        all_headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        if method != "GET":
            if "_xsrf" not in self.cookies:
                self.request("/api/auth/csrf")
            all_headers.setdefault("X-XSRFToken", self.cookies["_xsrf"])
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        own = conn is None
        conn = conn or self.connection()
        try:
            conn.request(method, path, body=data, headers=all_headers)
            return self.read(conn)
        finally:
            if own:
                conn.close()

    def read(self, conn: http.client.HTTPConnection) -> tuple[int, http.client.HTTPMessage, Any]:
        response = conn.getresponse()
        raw = response.read()
        for header in response.headers.get_all("Set-Cookie") or []:
            self.set_cookie_headers.append(header)
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel.value == "" or morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw
        return response.status, response.headers, parsed

    def register(self, username: str, password: str = LIVE_PASSWORD, **headers: str) -> int:
        status, _, _ = self.request(
            "/api/auth/register", "POST", {"username": username, "password": password}, headers
        )
        return status

    def login(self, username: str, password: str = LIVE_PASSWORD, **headers: str) -> int:
        status, _, _ = self.request(
            "/api/auth/login", "POST", {"username": username, "password": password}, headers
        )
        return status

    def me(self) -> int:
        return self.request("/api/users/me")[0]


def run_plp(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> Any:
    """Run `python run.py ARGS` to completion (for start-up refusals)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PLP_", "SESSION_"))}
    full_env.update({"SESSION_SECRET": LIVE_SECRET, **(env or {})})
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(ROOT),
    )


def run_async(make_coro: Any) -> Any:
    """Run a coroutine on a fresh event loop in a worker thread (independent of pytest's)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, make_coro()).result(120)


class Chat:
    """A real WebSocket to /ws/chat with the session cookie of a `Web` client."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.seen: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, web: Web, origin: str | None = None) -> Chat:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        name = next(n for n in web.cookies if n.endswith("plp_session"))
        headers = {"Cookie": f"{name}={web.cookies[name]}"}
        if origin is not None:
            headers["Origin"] = origin
        request = HTTPRequest(web.server.ws_url + "/ws/chat", headers=headers, validate_cert=False)
        chat = cls(await websocket_connect(request))
        await chat.expect("hello")
        return chat

    async def send(self, frame: dict[str, Any]) -> None:
        await self.conn.write_message(json.dumps(frame))

    async def expect(self, kind: str, **fields: Any) -> dict[str, Any]:
        """The next frame of that type (and those field values), skipping others."""
        while True:
            raw = await asyncio.wait_for(self.conn.read_message(), 30)
            assert raw is not None, f"closed ({self.conn.close_code}) waiting for {kind}"
            frame = json.loads(raw)
            self.seen.append(frame)
            if frame.get("type") == kind and all(frame.get(k) == v for k, v in fields.items()):
                return frame

    async def close_code(self) -> int | None:
        """Read until the server closes; its close code."""
        while await asyncio.wait_for(self.conn.read_message(), 30) is not None:
            pass
        self.conn.close()
        return self.conn.close_code

    async def shut(self) -> None:
        """Close from our side and wait for the server's close frame."""
        self.conn.close()
        while await asyncio.wait_for(self.conn.read_message(), 30) is not None:
            pass


def scrape(port: int, host: str = "127.0.0.1") -> dict[str, float]:
    """Every sample on /metrics as {'name{labels}': value}."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples
