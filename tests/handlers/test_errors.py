"""The handler bases' error answers (issue 11): one table, ApiHandler by class, one header writer.

Probe handlers are added to the real application and reached over real HTTP. Each raises one
domain, storage or session-store error the way a service would; the answer must be the status,
code, message, fields and Retry-After that `plp.handlers.errors.ERRORS` gives it, as JSON from
an ApiHandler and as a page from a page handler, with the security headers either way. A new
ApiHandler subclass with no flag of any kind answers an anonymous request 401, not a redirect.
"""

from __future__ import annotations

import inspect
import json

import pytest

import plp.errors
from plp.app import make_app
from plp.auth.decorators import authenticated
from plp.errors import (
    AccountDisabled,
    Conflict,
    DomainError,
    InvalidCredentials,
    InvalidInput,
    NotFound,
    RateLimited,
)
from plp.handlers.base import ApiHandler
from plp.handlers.errors import ERRORS, answer_for
from plp.handlers.pages import PageHandler
from plp.security import DEFAULT_HEADERS
from plp.sessions.base import SessionStoreUnavailable
from plp.storage.base import StorageUnavailable, UnstorableValue, UsernameTaken

SECRET_CAUSE = "disk full at /srv/plp/secret-path"

# name -> (the error a service raises, status, code, message, fields, Retry-After)
CASES = {
    "invalid": (
        InvalidInput("Please correct the highlighted fields.", {"username": "Too short."}),
        400,
        "bad_request",
        "Please correct the highlighted fields.",
        {"username": "Too short."},
        None,
    ),
    "credentials": (
        InvalidCredentials("Invalid username or password."),
        401,
        "invalid_credentials",
        "Invalid username or password.",
        None,
        None,
    ),
    "disabled": (
        AccountDisabled("This account has been disabled."),
        403,
        "account_disabled",
        "This account has been disabled.",
        None,
        None,
    ),
    "missing": (NotFound("No such user."), 404, "not_found", "No such user.", None, None),
    "conflict": (
        Conflict("Taken.", {"name": "Taken."}),
        409,
        "conflict",
        "Taken.",
        {"name": "Taken."},
        None,
    ),
    "limited": (RateLimited("Slow down.", 2.2), 429, "rate_limited", "Slow down.", None, "3"),
    "limited_short": (RateLimited("Wait.", 0.01), 429, "rate_limited", "Wait.", None, "1"),
    "taken": (UsernameTaken(), 409, "conflict", "That username is taken.", None, None),
    "unstorable": (
        UnstorableValue(SECRET_CAUSE),
        400,
        "bad_request",
        "The request contains characters that cannot be stored.",
        None,
        None,
    ),
    "db_down": (
        StorageUnavailable(SECRET_CAUSE),
        503,
        "unavailable",
        "The database is unavailable; try again shortly.",
        None,
        "5",
    ),
    "sessions_down": (
        SessionStoreUnavailable(SECRET_CAUSE),
        503,
        "unavailable",
        "Sessions are unavailable; try again shortly.",
        None,
        "5",
    ),
}


class ProbeApi(ApiHandler):
    """Raises the error named in the path, like a service called from an API handler."""

    async def get(self, name: str) -> None:
        raise CASES[name][0]


class ProbePage(PageHandler):
    """The same from a page handler."""

    async def get(self, name: str) -> None:
        raise CASES[name][0]


class NewApi(ApiHandler):
    """An API handler written the obvious way: no flag, only the base class and the guard."""

    @authenticated
    async def get(self) -> None:
        self.write_json({"ok": True})


class NewPage(PageHandler):
    @authenticated
    async def get(self) -> None:
        self.write("ok")


@pytest.fixture
def app(ctx):
    application = make_app(ctx)
    application.add_handlers(
        r".*",
        [
            (r"/probe/api/(\w+)", ProbeApi),
            (r"/probe/page/(\w+)", ProbePage),
            (r"/probe/new-api", NewApi),
            (r"/probe/new-page", NewPage),
        ],
    )
    return application


def assert_security_headers(headers) -> None:
    for name, value in DEFAULT_HEADERS.items():
        assert headers.get(name) == value, name
    assert "Server" not in headers


def test_every_domain_error_is_in_the_table():
    domain = [
        cls
        for _, cls in inspect.getmembers(plp.errors, inspect.isclass)
        if issubclass(cls, DomainError) and cls is not DomainError
    ]
    assert len(domain) >= 6
    for cls in domain:
        assert cls in ERRORS, f"{cls.__name__} has no status in ERRORS"
    # A subclass a service might add later still gets its base's answer, never a 500.
    assert answer_for(type("Sub", (NotFound,), {})("x")) == ERRORS[NotFound]


@pytest.mark.gen_test
@pytest.mark.parametrize("name", sorted(CASES))
async def test_api_handler_answers_each_error_from_the_table(http_client, base_url, name):
    _error, status, code, message, fields, retry_after = CASES[name]
    response = await http_client.fetch(f"{base_url}/probe/api/{name}", raise_error=False)
    assert response.code == status
    assert response.headers["Content-Type"].startswith("application/json")
    data = json.loads(response.body)
    assert data["error"] == code
    assert data["message"] == message
    assert data.get("fields") == fields
    assert response.headers.get("Retry-After") == retry_after
    assert SECRET_CAUSE not in response.body.decode()
    assert_security_headers(response.headers)


@pytest.mark.gen_test
@pytest.mark.parametrize("name", ["missing", "limited", "db_down"])
async def test_page_handler_answers_each_error_as_a_page(http_client, base_url, name):
    _error, status, _code, _message, _fields, retry_after = CASES[name]
    response = await http_client.fetch(f"{base_url}/probe/page/{name}", raise_error=False)
    assert response.code == status
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers.get("Retry-After") == retry_after
    assert SECRET_CAUSE not in response.body.decode()
    assert_security_headers(response.headers)


@pytest.mark.gen_test
async def test_new_api_handler_without_a_flag_answers_401(http_client, base_url):
    for method, body in (("GET", None), ("HEAD", None)):
        response = await http_client.fetch(
            f"{base_url}/probe/new-api",
            method=method,
            body=body,
            follow_redirects=False,
            raise_error=False,
        )
        assert response.code == 401, method
        assert "Location" not in response.headers
        assert_security_headers(response.headers)
    response = await http_client.fetch(f"{base_url}/probe/new-api", raise_error=False)
    assert json.loads(response.body)["error"] == "not_authenticated"


@pytest.mark.gen_test
async def test_new_page_handler_redirects_to_sign_in(http_client, base_url):
    response = await http_client.fetch(
        f"{base_url}/probe/new-page", follow_redirects=False, raise_error=False
    )
    assert response.code == 302
    assert response.headers["Location"] == "/login?next=%2Fprobe%2Fnew-page"
