"""The OpenAPI document: in step with the routes, served as package data, and fuzzed.

docs/openapi.yaml is the source and plp/data/openapi.json the served copy
(scripts/openapi-json). The fuzz tests run schemathesis, a fuzzer written elsewhere,
against a live `python run.py` process (SQLite and memory sessions; PostgreSQL and Redis
sessions) signed in as each role and as nobody, with the XSRF header and cookie, and fail
on a 5xx, an undescribed status code, a body, content type or header that breaks the
document, schema-invalid input that is not refused, or an undescribed method that is not
405. No case is excluded.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from tornado.ioloop import IOLoop

from plp.handlers.api import NotFoundApiHandler
from tests.support import PASSWORD, ROOT, LiveServer, backends, body, need

DOC_YAML = ROOT / "docs" / "openapi.yaml"
DOC_JSON = ROOT / "plp" / "data" / "openapi.json"
METHODS = ("get", "post", "put", "patch", "delete")


def document() -> dict[str, Any]:
    return json.loads(DOC_JSON.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------- the document itself


def test_served_copy_is_generated_from_the_yaml_source():
    try:
        import yaml
    except ImportError:
        need(False, "PyYAML is not installed (pip install -e '.[test]')")
    source = yaml.safe_load(DOC_YAML.read_text(encoding="utf-8"))
    assert source == document(), "plp/data/openapi.json is stale: run scripts/openapi-json"
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "openapi-json"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr


def test_document_is_valid_openapi_3_1():
    try:
        from openapi_spec_validator import OpenAPIV31SpecValidator
    except ImportError:
        need(False, "openapi-spec-validator is not installed (pip install -e '.[test]')")
    doc = document()
    assert doc["openapi"].startswith("3.1.")
    errors = [e.message for e in OpenAPIV31SpecValidator(doc).iter_errors()]
    assert errors == []


def test_every_reference_resolves_and_every_operation_is_named():
    doc = document()

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(doc):
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            assert part in node, f"unresolved {ref}"
            node = node[part]
    # Every operation describes at least one success and its error bodies as JSON errors.
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert any(s.startswith("2") for s in statuses), (method, path)
            assert operation.get("operationId"), (method, path)


# ------------------------------------------------------------------- document versus routes


def route_template(pattern: str) -> str:
    """A Tornado route regex as a path template with `{}` for each group."""
    return pattern.removesuffix("$").replace("([^/]+)", "{}").replace("\\.", ".")


def doc_template(path: str) -> str:
    return re.sub(r"\{[^}/]+\}", "{}", path)


def api_routes(app) -> dict[str, type]:
    """Template -> handler class for every route of the app under /api/ (and /healthz)."""
    found = {}
    for rule in app.wildcard_router.rules:
        pattern = rule.matcher.regex.pattern
        if rule.target is NotFoundApiHandler:
            continue  # the JSON 404 for everything else under /api/
        if pattern.startswith("/api/") or pattern.startswith("/healthz"):
            found[route_template(pattern)] = rule.target
    return found


def implemented(handler: type) -> set[str]:
    """The methods a handler class really has (HEAD and OPTIONS come with every route)."""
    import tornado.web

    base = tornado.web.RequestHandler
    return {m for m in METHODS if getattr(handler, m) is not getattr(base, m)}


def test_every_api_route_is_described_and_every_described_path_exists(app):
    routes = api_routes(app)
    described = {doc_template(p): p for p in document()["paths"]}
    assert not re.search(r"[\\()\[\]?*+|^$]", "".join(routes)), routes  # plain patterns only
    assert set(routes) - set(described) == set(), "routes missing from docs/openapi.yaml"
    assert set(described) - set(routes) == set(), "described paths the server does not have"


def test_described_methods_are_the_implemented_ones(app):
    routes = api_routes(app)
    for path, item in document()["paths"].items():
        handler = routes[doc_template(path)]
        described = {m for m in item if m in METHODS}
        assert described == implemented(handler), (path, handler.__name__)


def test_described_paths_reach_their_handlers(app):
    """A concrete URL for each described path is routed to the handler the template names."""
    from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

    routes = api_routes(app)
    for path in document()["paths"]:
        url = re.sub(r"\{[^}/]+\}", "7", path)
        request = HTTPServerRequest(
            start_line=RequestStartLine("GET", url, "HTTP/1.1"),
            headers=HTTPHeaders({"Host": "127.0.0.1"}),
        )
        delegate = app.find_handler(request)
        assert delegate.handler_class is routes[doc_template(path)], path


# -------------------------------------------------------------------------- the served copy


@pytest.mark.gen_test
async def test_openapi_json_is_served_to_anyone_with_the_api_headers(client):
    response = await client.fetch("/api/openapi.json")
    assert response.code == 200
    assert body(response) == document()
    assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Set-Cookie" not in response.headers  # stores nothing, needs nothing
    head = await client.fetch("/api/openapi.json", "HEAD")
    assert head.code == 200 and head.body == b""
    refused = await client.fetch("/api/openapi.json", "POST", body="{}")
    assert refused.code == 405 and body(refused)["error"] == "method_not_allowed"
    assert refused.headers["Allow"] == "GET, HEAD"
    big = await client.fetch("/api/openapi.json", "GET", body="x" * (65 * 1024))
    assert big.code == 413 and body(big)["error"] == "too_large"


@pytest.mark.gen_test
async def test_openapi_json_answers_signed_in_users_the_same(client):
    await client.register("reader")
    response = await client.fetch("/api/openapi.json")
    assert response.code == 200 and body(response) == document()
    assert response.headers["Cache-Control"] == "no-store"


# ------------------------------------------------------------------------ schemathesis fuzz

try:
    import requests
    import schemathesis
    from hypothesis import HealthCheck, settings
    from schemathesis.checks import (
        content_type_conformance,
        negative_data_rejection,
        not_a_server_error,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
        unsupported_method,
    )
except ImportError:  # pragma: no cover - CI installs the test extra
    schemathesis = None


def test_schemathesis_is_installed():
    """On CI a missing fuzzer fails the run instead of skipping the fuzz silently."""
    need(schemathesis is not None, "schemathesis is not installed (pip install -e '.[test]')")


# Small and fixed, so a run is reproducible and this module stays within about three minutes
# on two cores: each operation gets the coverage phase's boundary and malformed cases plus
# this many generated ones (positive and negative) per role and backend. Raise it for a
# deeper local run: PLP_TEST_FUZZ_EXAMPLES=200.
MAX_EXAMPLES = int(os.environ.get("PLP_TEST_FUZZ_EXAMPLES", "20"))
SEED = 20251010
ROLES = ("anonymous", "student", "teacher", "admin")
# Successful calls of these end or change the fuzzing users' sessions, roles or state; after
# one, every user is checked and put back (roles, enabled, a live session) before the next
# case, so later operations still run as the role they are meant to.
RESETS = {
    "POST /api/auth/register",
    "POST /api/auth/login",
    "POST /api/auth/logout",
    "POST /api/auth/logout-all",
    "POST /api/users/me/password",
    "DELETE /api/sessions/{id}",
    "PATCH /api/admin/users/{id}",
    "DELETE /api/admin/users/{id}/sessions",
}


class Principal:
    """A fuzzing identity: its cookies and XSRF token, re-made after a session ends."""

    def __init__(self, server: LiveServer, role: str) -> None:
        self.server = server
        self.role = role
        self.username = f"fuzz-{role}"
        self.user_id: int | None = None
        self.cookies: dict[str, str] = {}
        self.headers: dict[str, str] = {}

    def refresh_xsrf(self) -> None:
        response = requests.get(self.server.url + "/api/auth/csrf", timeout=10)
        response.raise_for_status()
        self.cookies = {"_xsrf": response.cookies["_xsrf"]}
        self.headers = {"X-XSRFToken": response.json()["token"]}

    def sign_in(self) -> None:
        self.refresh_xsrf()
        if self.role == "anonymous":
            return
        response = requests.post(
            self.server.url + "/api/auth/login",
            json={"username": self.username, "password": PASSWORD},
            cookies=self.cookies,
            headers=self.headers,
            timeout=10,
        )
        assert response.status_code == 200, (self.role, response.status_code, response.text)
        self.user_id = response.json()["user"]["id"]
        self.cookies["plp_session"] = response.cookies["plp_session"]

    def signed_in_as_self(self) -> bool:
        """Whether this principal still has its own live session and role (or none at all)."""
        if self.role == "anonymous":
            return "plp_session" not in self.cookies
        response = requests.get(self.server.url + "/api/users/me", cookies=self.cookies, timeout=10)
        if response.status_code != 200:
            return False
        user = response.json()["user"]
        return user["id"] == self.user_id and user["role"] == self.role


class Principals:
    """The four fuzzing identities on one live server."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.by_role = {role: Principal(server, role) for role in ROLES}

    def restore(self) -> None:
        """Every role as it should be: right role, enabled, signed in."""
        admin = self.by_role["admin"]
        if not admin.signed_in_as_self():
            admin.sign_in()
        users = requests.get(
            self.server.url + "/api/admin/users", cookies=admin.cookies, timeout=10
        ).json()["users"]
        by_name = {u["username"]: u for u in users}
        for principal in self.by_role.values():
            user = by_name.get(principal.username)
            if user and (user["role"] != principal.role or user["disabled"]):
                response = requests.patch(
                    f"{self.server.url}/api/admin/users/{user['id']}",
                    json={"role": principal.role, "disabled": False},
                    cookies=admin.cookies,
                    headers=admin.headers,
                    timeout=10,
                )
                assert response.status_code == 200, response.text
        for principal in self.by_role.values():
            if not principal.signed_in_as_self():
                principal.sign_in()


def create_user(server: LiveServer, username: str, role: str) -> None:
    """`python run.py create-user` against the running server's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLP_")}
    env.update(server.extra_env)
    env.update(PLP_DATA_DIR=str(server.data_dir), PLP_BCRYPT_ROUNDS="4", PLP_PASSWORD=PASSWORD)
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "create-user", "--username", username]
        + ["--role", role],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


async def post_messages(server: LiveServer, cookies: dict[str, str], channel: int, count: int):
    """Send `count` chat messages over the real WebSocket and wait for each to be stored."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    request = HTTPRequest(server.ws_url + "/ws/chat", headers={"Cookie": cookie})
    conn = await websocket_connect(request)

    async def expect(kind: str) -> dict:
        while True:
            frame = json.loads(await conn.read_message())
            if frame["type"] == kind:
                return frame

    await expect("hello")
    await conn.write_message(json.dumps({"type": "join", "channel": channel}))
    await expect("joined")
    for n in range(count):
        await conn.write_message(json.dumps({"type": "send", "channel": channel, "text": f"m{n}"}))
        await expect("message")
    conn.close()


@contextlib.contextmanager
def backend_env(backend: str) -> Iterator[dict[str, str]]:
    """Settings for a live server on `backend`: SQLite and memory sessions by default, or a
    fresh PostgreSQL database with sessions in a Redis database (the scale-out setup)."""
    if backend == "sqlite":
        yield {}
        return
    redis_url = backends.redis_url().rsplit("/", 1)[0] + f"/{random.randint(1, 63)}"
    base_pg = backends.postgres_url()
    pg_url, pg_name = backends.fresh_postgres_database(base_pg)
    import redis

    raw = redis.Redis.from_url(redis_url)
    raw.flushdb()
    try:
        yield {"PLP_DB": pg_url, "PLP_SESSION_BACKEND": "redis", "PLP_REDIS_URL": redis_url}
    finally:
        raw.flushdb()
        raw.close()
        backends.drop_postgres_database(base_pg, pg_name)


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres+redis", marks=pytest.mark.services)],
)
def principals(request, tmp_path_factory) -> Iterator[Principals]:
    need(schemathesis is not None, "schemathesis is not installed (pip install -e '.[test]')")
    with backend_env(request.param) as env:
        # The login and registration limits are raised so that the fuzzer's thousands of
        # wrong passwords and new accounts cannot lock the fuzzing users out (their 429s are
        # tested in test_throttle.py); every other setting is the default.
        env.update(
            PLP_LOGIN_FAILURES_PER_ACCOUNT="1000000",
            PLP_LOGIN_FAILURES_PER_ADDRESS="1000000",
            PLP_REGISTRATIONS_PER_ADDRESS="1000000",
        )
        server = LiveServer(tmp_path_factory.mktemp("openapi") / "data", env=env).start()
        try:
            yield from signed_in(server)
        finally:
            log = server.log_text()
            server.stop()
        assert "Traceback" not in log, log[-4000:]


def signed_in(server: LiveServer) -> Iterator[Principals]:
    """The four principals on `server`, with some chat history in `general` to page through."""
    create_user(server, "fuzz-admin", "admin")
    create_user(server, "fuzz-teacher", "teacher")
    signup = Principal(server, "student")
    signup.refresh_xsrf()
    response = requests.post(
        server.url + "/api/auth/register",
        json={"username": "fuzz-student", "password": PASSWORD},
        cookies=signup.cookies,
        headers=signup.headers,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    group = Principals(server)
    for principal in group.by_role.values():
        principal.sign_in()
    # `general` is id 1, the documented example channel id. Operations run in document
    # order, where history comes before channel deletion.
    loop = IOLoop()
    try:
        loop.run_sync(lambda: post_messages(server, group.by_role["teacher"].cookies, 1, 3))
    finally:
        loop.close(all_fds=True)
    yield group


if schemathesis is not None:
    CHECKS = [
        not_a_server_error,
        status_code_conformance,
        response_schema_conformance,
        content_type_conformance,
        response_headers_conformance,
        negative_data_rejection,
        unsupported_method,
    ]
    CONFIG = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                # The session cookie and the XSRF pair come from the principal, not from the
                # generator: refusals without them are tested in test_api_input.py.
                "with-security-parameters": False,
            },
            "phases": {"stateful": {"enabled": False}},
        }
    )
    SCHEMA = schemathesis.openapi.from_path(str(DOC_JSON), config=CONFIG)

    @pytest.mark.parametrize("role", ROLES)
    @SCHEMA.parametrize()
    @settings(suppress_health_check=list(HealthCheck))
    def test_schemathesis_finds_nothing(case, role, principals):
        principal = principals.by_role[role]
        response = case.call(
            base_url=principals.server.url,
            cookies=dict(principal.cookies),
            headers=dict(principal.headers),
            timeout=30,
        )
        try:
            case.validate_response(response, checks=CHECKS)
        finally:
            label = f"{case.method.upper()} {case.operation.path}"
            if response.status_code < 300 and label in RESETS:
                principals.restore()
        if response.status_code in (401, 403) and role != "anonymous":
            # A refusal must come from the request, not from a session or role an earlier
            # case took away without RESETS knowing: otherwise this role fuzzed nothing.
            assert principal.signed_in_as_self(), f"{role} lost its session or role: see RESETS"
