"""In-process app helpers: the test secret and password, a clock, a cookie-keeping HTTP client."""

from __future__ import annotations

import json
import re
import time
from http.cookies import SimpleCookie
from typing import Any

from tornado.httpclient import HTTPClientError, HTTPResponse

TEST_SECRET = "test-secret-" + "x" * 40
PASSWORD = "correct horse battery"


class Clock:
    """A controllable clock for expiry tests: starts at real time, moves only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
    """The response's JSON body."""
    return json.loads(response.body)


async def signed_in(make_client, make_user, name: str, role: str = "student", **headers) -> Client:
    """A client signed in through the login API as a new user (extra request headers allowed)."""
    await make_user(name, role)
    client = make_client()
    response = await client.fetch(
        "/api/auth/login",
        "POST",
        json_body={"username": name, "password": PASSWORD},
        headers=headers,
    )
    assert response.code == 200, response.body
    return client


def visible_text(page: str) -> str:
    """The text a reader sees: tags and attribute values removed."""
    return re.sub(r"<[^>]*>", " ", page)
