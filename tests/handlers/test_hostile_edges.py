"""Hostile edge cases of issue 10 (items 4, 5, 7, 8, 12): each attack sent as is, over real
HTTP, TCP and WebSocket clients, with the answer, the stored data and the log checked.

SPEC §4 (no XSRF token from a query string, unknown /api/ paths 404 first), §6 (413 JSON for
any body over 64 KiB), §8 (malformed frames: `error bad_request`, nothing changed; a student's
`typing` in an announcement channel dropped), §10 (security headers on every answer).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from typing import Any
from urllib.parse import quote

import pytest
from tornado.httpclient import HTTPRequest
from tornado.httputil import HTTPHeaders
from tornado.iostream import IOStream, StreamClosedError
from tornado.tcpclient import TCPClient
from tornado.websocket import WebSocketClientConnection, websocket_connect

from plp.chat.wire import text_frame
from plp.handlers.bodylimit import DRAIN_MAX
from plp.log import JsonFormatter
from tests.support import PASSWORD, body
from tests.support.ws import WAIT, Peer, ws_url

KIB = 1024
MIB = 1024 * KIB


# ------------------------------------------------------------------------------ helpers


def assert_security_headers(headers: HTTPHeaders, where: str) -> None:
    """The §10 headers (development, plain HTTP)."""
    csp = headers.get("Content-Security-Policy", "")
    for directive in (
        "default-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
    ):
        assert directive in csp, (where, csp)
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("X-Frame-Options") == "DENY", where
    assert headers.get("Referrer-Policy") == "strict-origin-when-cross-origin", where
    assert headers.get("Cross-Origin-Opener-Policy") == "same-origin", where
    assert "camera=()" in headers.get("Permissions-Policy", ""), where
    assert "Server" not in headers, where


def assert_json_error(response: Any, status: int, code: str) -> None:
    assert response.code == status, (response.code, response.body[:300])
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    assert body(response)["error"] == code, response.body
    assert_security_headers(response.headers, f"{status} {response.effective_url[:80]}")


def assert_clean_log(caplog: pytest.LogCaptureFixture) -> None:
    """No traceback, no error line, no bare-400 "Malformed HTTP message" from Tornado."""
    for record in caplog.records:
        text = record.getMessage()
        assert record.exc_info is None, f"traceback logged: {record.name}: {text[:300]}"
        assert record.levelno < logging.ERROR, f"{record.name}: {text[:300]}"
        assert "Malformed HTTP message" not in text, text[:300]
        assert "Uncaught exception" not in text, text[:300]


@pytest.fixture
def port(http_server, http_port) -> int:
    """The port of the served app (requesting http_server is what starts it)."""
    return http_port


async def raw_connection(port: int) -> IOStream:
    return await TCPClient().connect("127.0.0.1", port)


async def read_response(stream: IOStream) -> tuple[int, HTTPHeaders, bytes]:
    """One HTTP/1.1 response with a Content-Length body, read off a raw stream."""
    head = await asyncio.wait_for(stream.read_until(b"\r\n\r\n", max_bytes=64 * KIB), WAIT)
    status_line, _, rest = head.decode("latin-1").partition("\r\n")
    headers = HTTPHeaders.parse(rest)
    payload = await asyncio.wait_for(stream.read_bytes(int(headers["Content-Length"])), WAIT)
    return int(status_line.split(" ")[1]), headers, payload


async def send_until_closed(stream: IOStream, limit: int) -> int:
    """Write body bytes until the server closes the connection; how many were written."""
    sent = 0
    piece = b"x" * (256 * KIB)
    try:
        while sent < limit:
            await asyncio.wait_for(stream.write(piece), WAIT)
            sent += len(piece)
    except StreamClosedError:
        pass
    return sent


# ------------------------------------------------------------- item 5: odd static paths

STATIC_PATHS = [
    "/static/%00",
    "/static/%00.css",
    "/static/style.css%00",
    "/static/%00/../style.css",
    "/static/..%2f",
    "/static/..%2fplp%2fapp.py",
    "/static/%2e%2e/plp/app.py",
    "/static/../plp/app.py",
    "/static/.",
    "/static/..",
    "/static/",
    "/static//etc/passwd",
    "/static/%5c..%5cplp%5capp.py",
    "/static/a%0ab",
    "/static/%1b[31m",
    "/static/" + "a" * 5000,
    "/static/" + "a/" * 3000,
    "/static/style.css/",
    "/static/nothing.css",
]


@pytest.mark.gen_test(timeout=30)
async def test_odd_static_paths_are_404_with_headers(http_client, base_url, caplog):
    caplog.set_level(logging.DEBUG)
    for path in STATIC_PATHS:
        for method in ("GET", "HEAD"):
            r = await http_client.fetch(base_url + path, method=method, raise_error=False)
            assert r.code == 404, (path, method, r.code)
            assert_security_headers(r.headers, path)
    ok = await http_client.fetch(base_url + "/static/style.css", raise_error=False)
    assert ok.code == 200  # the real file is still served
    # Static files are read-only: other methods get 405 before (and whatever) any XSRF.
    for query in ("", "?_xsrf=anything"):
        r = await http_client.fetch(
            base_url + "/static/style.css" + query, method="POST", body=b"", raise_error=False
        )
        assert r.code == 405 and r.headers["Allow"] == "GET, HEAD", r.code
        assert_security_headers(r.headers, "POST static")
    assert_clean_log(caplog)


# ------------------- items 7, 12: XSRF only from body or header; unknown /api/ 404 first


@pytest.mark.gen_test(timeout=30)
async def test_xsrf_token_in_query_string_is_refused(client, make_user, caplog):
    caplog.set_level(logging.DEBUG)
    await make_user("alice")
    token = body(await client.fetch("/api/auth/csrf"))["token"]
    creds = {"username": "alice", "password": PASSWORD}
    for name in ("_xsrf", "%5Fxsrf", "_XSRF"):
        r = await client.fetch(
            f"/api/auth/login?{name}={quote(token)}", "POST", json_body=creds, xsrf=False
        )
        assert_json_error(r, 403, "xsrf")
        assert client.cookies.get("plp_session") is None
    # Pages: the form field is the only place besides the header.
    form = f"username=alice&password={quote(PASSWORD)}"
    r = await client.fetch(
        f"/login?_xsrf={quote(token)}",
        "POST",
        body=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        xsrf=False,
    )
    assert r.code == 403 and r.headers["Content-Type"].startswith("text/html")
    assert_security_headers(r.headers, "page 403")
    assert client.cookies.get("plp_session") is None
    # The same token in the form field or the header works (the test can fail).
    r = await client.fetch(
        "/login",
        "POST",
        body=form + f"&_xsrf={quote(token)}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        xsrf=False,
    )
    assert r.code == 302 and client.cookies.get("plp_session")
    r = await client.fetch("/api/auth/login", "POST", json_body=creds)
    assert r.code == 200
    # The token never reached a log line; the access log shows the parameter scrubbed.
    access = [rec.getMessage() for rec in caplog.records if rec.name == "plp.access"]
    assert any("?_xsrf=***" in line for line in access), access
    assert any("?%5Fxsrf=***" in line for line in access), access
    for record in caplog.records:
        assert token not in record.getMessage(), record.getMessage()
        assert quote(token) not in record.getMessage(), record.getMessage()
    assert_clean_log(caplog)


@pytest.mark.gen_test(timeout=30)
async def test_access_log_cuts_long_uris_and_escapes_controls(client, caplog):
    caplog.set_level(logging.DEBUG)
    long_path = "/api/sessions/" + "x" * 60000
    r = await client.fetch(long_path, "DELETE", xsrf=False)
    assert r.code in (403, 404)
    r = await client.fetch("/nothing?" + "q" * 180 + "&_xsrf=SECRETVALUE1234", xsrf=False)
    assert r.code == 404
    r = await client.fetch("/x%1b?a=%0d%0a", xsrf=False)
    access = [rec for rec in caplog.records if rec.name == "plp.access"]
    assert len(access) == 3, [a.getMessage()[:100] for a in access]
    for record in access:
        line = record.getMessage()
        assert len(line) < 300, len(line)
        assert "SECRETVALUE" not in line, line
        assert not re.search(r"[\x00-\x1f\x7f]", line), line
        shipped = json.loads(JsonFormatter().format(record))
        assert len(shipped["uri"]) <= 201, len(shipped["uri"])
    assert "…" in access[0].getMessage() and "…" in access[1].getMessage()
    assert "_xsrf=***" in access[1].getMessage()


UNKNOWN_API = [
    "/api/x",
    "/api",
    "/api/",
    "/api/auth/login/",
    "/api/auth/login/x",
    "/api/users/me/password/",
    "/api/admin/users/1/sessions/x",
    "/api/%00",
    "/api/" + "x" * 5000,
]


@pytest.mark.gen_test(timeout=30)
async def test_unknown_api_path_is_404_before_xsrf(ctx, client, caplog):
    caplog.set_level(logging.DEBUG)
    for path in UNKNOWN_API:
        for method in ("POST", "PUT", "PATCH", "DELETE", "GET"):
            r = await client.fetch(path, method, body=b"{}", xsrf=False)
            assert_json_error(r, 404, "not_found")
            assert "Set-Cookie" not in r.headers, (path, method)
    assert [e for e in await ctx.db.list_audit(500) if e.event == "xsrf_rejected"] == []
    assert_clean_log(caplog)


def _real_routes(app) -> list[tuple[str, type]]:
    rules = []
    for rule in app.wildcard_router.rules:
        pattern = rule.matcher.regex.pattern
        rules.append((pattern, rule.target))
    return rules


@pytest.mark.gen_test(timeout=60)
async def test_no_real_route_skips_xsrf(app, ctx, client, make_user, session_cookie):
    """Every state-changing method of every real route still needs the token."""
    from tornado.web import RequestHandler

    from plp.handlers.api import NotFoundApiHandler
    from plp.handlers.pages import NotFoundHandler

    admin = await make_user("root", "admin")
    client.cookies.update(dict([(await session_cookie(admin.id)).split("=", 1)]))
    checked = 0
    for pattern, handler in _real_routes(app):
        if handler in (NotFoundApiHandler, NotFoundHandler) or not isinstance(handler, type):
            continue
        path = re.sub(r"\([^)]*\)", "1", pattern.rstrip("$"))
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            if getattr(handler, method.lower()) is getattr(RequestHandler, method.lower()):
                continue  # not implemented: 405 or 403 either way, nothing to protect
            r = await client.fetch(path, method, body=b"{}", xsrf=False)
            assert r.code == 403, (method, path, r.code, r.body[:200])
            checked += 1
    assert checked >= 10, checked
    # The admin is still signed in and nothing changed: the session survived every DELETE.
    assert (await client.fetch("/api/users/me")).code == 200


# ------------------------------------------- WebSocket helpers (items 4 and 12)


@pytest.fixture
def peer(http_server, base_url, make_user, session_cookie):
    """A signed-in user with an open /ws/chat socket whose hello has been read."""
    opened: list[WebSocketClientConnection] = []

    async def make(username: str, role: str = "student") -> Peer:
        user = await make_user(username, role)
        request = HTTPRequest(ws_url(base_url), headers={"Cookie": await session_cookie(user.id)})
        conn = await websocket_connect(request)
        opened.append(conn)
        p = Peer(conn, user)
        await p.expect("hello")
        return p

    yield make
    for conn in opened:
        conn.close()


# ------------------------------------------------- item 4: malformed WebSocket frames

DEEP_FRAMES = [
    pytest.param("[" * 10000, id="10000-open-brackets"),
    pytest.param('{"a":' * 3200, id="3200-open-objects"),  # 16,000 bytes: under 16 KiB
    pytest.param("[" * 400 + "]" * 400, id="deep-array-within-recursion-limit"),
    pytest.param('{"type":"send","channel":1,"text":"hi","x":' + '{"a":' * 3000, id="deep-tail"),
    pytest.param(
        '{"type":"send","channel":1,"text":"hi","clientId":"n","x":' + "[" * 300 + "]" * 300 + "}",
        id="nested-extra-field",
    ),
    pytest.param('{"type":"send","channel":1,"text":["hi"]}', id="text-as-array"),
    pytest.param('{"type":"send","channel":{"id":1},"text":"hi"}', id="channel-as-object"),
    pytest.param('{"type":["send"],"channel":1,"text":"hi"}', id="type-as-array"),
]


@pytest.mark.parametrize("frame", DEEP_FRAMES)
@pytest.mark.gen_test(timeout=30)
async def test_deep_or_nested_frames_get_bad_request(ctx, peer, caplog, frame):
    caplog.set_level(logging.DEBUG)
    alice = await peer("alice")
    await alice.join(1)
    await alice.send(frame)
    error = await alice.expect("error", code="bad_request")
    assert "ref" not in error, error
    assert await alice.until_pong() == []  # still open, nothing else happened
    assert await ctx.db.list_messages(1) == []
    # The socket still works: a proper send is stored and acknowledged.
    await alice.send({"type": "send", "channel": 1, "text": "after", "clientId": "ok"})
    ack = await alice.expect("message", clientId="ok")
    assert ack["message"]["text"] == "after"
    assert_clean_log(caplog)


# Raw JSON text, exactly as a hostile client would write it: `\ud800` escapes parse into
# lone surrogates, which UTF-8 cannot carry.
SURROGATE_FRAMES = [
    pytest.param(
        r'{"type":"send","channel":1,"text":"hi","clientId":"c\ud800"}', "send", id="clientId"
    ),
    pytest.param(r'{"type":"send\udfff","channel":1,"text":"hi"}', None, id="type-unknown"),
    pytest.param(r'{"type":"\ud800","channel":1}', None, id="type-only-surrogate"),
    pytest.param(r'{"type":"send","channel":1,"text":"hi","x\ud800":1}', "send", id="key"),
    pytest.param(
        r'{"type":"send","channel":1,"text":"hi","note":"\udc00"}', "send", id="extra-field"
    ),
    pytest.param(r'{"type":"send","channel":1,"text":"a\ud83db"}', "send", id="text-half-pair"),
    pytest.param(
        r'{"type":"send","channel":1,"text":"\ude00","clientId":"k"}', "k", id="text-with-ref"
    ),
    pytest.param(r'{"type":"typing","channel":1,"x":"\ud800"}', "typing", id="typing"),
    pytest.param(r'{"type":"join","channel":1,"\udbff":"x"}', "join", id="join-key"),
]


@pytest.mark.parametrize("frame, ref", SURROGATE_FRAMES)
@pytest.mark.gen_test(timeout=30)
async def test_lone_surrogate_in_any_string_gets_bad_request(ctx, peer, clock, caplog, frame, ref):
    caplog.set_level(logging.DEBUG)
    alice = await peer("alice")
    bob = await peer("bob")
    await alice.join(1)
    await bob.join(1)
    await alice.until_pong()
    await bob.until_pong()
    clock.advance(2)  # a typing frame would not be rate-limited
    await alice.send(frame)
    error = await alice.expect("error", code="bad_request")
    assert error.get("ref") == ref, error  # never the surrogate itself
    assert await alice.until_pong() == []  # no ack, no close: still open
    assert await ctx.db.list_messages(1) == []  # nothing stored ...
    assert await bob.until_pong() == []  # ... and nothing delivered
    # The same socket goes on working, and a real non-BMP character (a proper pair of
    # escapes) is not mistaken for a lone surrogate.
    await alice.send(r'{"type":"send","channel":1,"text":"ok \ud83d\ude00","clientId":"c2"}')
    ack = await alice.expect("message", clientId="c2")
    assert ack["message"]["text"] == "ok \U0001f600"
    assert (await bob.expect("message"))["message"]["text"] == "ok \U0001f600"
    assert [m.text for m in await ctx.db.list_messages(1)] == ["ok \U0001f600"]
    assert_clean_log(caplog)


def test_outgoing_frame_never_fails_on_a_surrogate():
    # Defence in depth under the input check: a frame holding one still encodes.
    frame = text_frame('{"ref":"\ud800"}')
    assert frame[2:] == b'{"ref":"?"}'


# ----------------------------------------------- item 12: typing, HEAD /ws/chat


@pytest.mark.gen_test(timeout=30)
async def test_student_typing_in_announcement_channel_is_dropped(ctx, peer, clock):
    teacher = await peer("teach", "teacher")
    kid = await peer("kid")
    news = await ctx.db.create_channel("news", "", "announcement", teacher.user.id)
    for channel in (news.id, 1):
        await teacher.join(channel)
        await kid.join(channel)
    await teacher.until_pong()
    await kid.until_pong()
    clock.advance(2)
    await kid.send({"type": "typing", "channel": news.id})  # dropped, silently
    assert await kid.until_pong() == []
    clock.advance(2)
    await kid.send({"type": "typing", "channel": 1})  # a discussion channel: delivered
    typing = await teacher.expect("typing")
    assert typing["channel"] == 1, "the announcement-channel typing was broadcast"
    # A teacher typing in the announcement channel still reaches the students.
    clock.advance(2)
    await teacher.send({"type": "typing", "channel": news.id})
    seen = await kid.expect("typing")
    assert seen["channel"] == news.id and seen["user"]["id"] == teacher.user.id


UPGRADE_HEADERS = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


@pytest.mark.gen_test(timeout=20)
async def test_head_ws_chat_with_upgrade_headers_does_not_upgrade(
    ctx, port, make_user, session_cookie, caplog
):
    caplog.set_level(logging.DEBUG)
    user = await make_user("alice")
    cookie = await session_cookie(user.id)
    for who in (cookie, None):
        stream = await raw_connection(port)
        headers = {"Host": f"127.0.0.1:{port}", **UPGRADE_HEADERS}
        if who:
            headers["Cookie"] = who
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        await stream.write(f"HEAD /ws/chat HTTP/1.1\r\n{lines}\r\n".encode())
        head = await asyncio.wait_for(stream.read_until(b"\r\n\r\n"), WAIT)
        status_line, _, rest = head.decode("latin-1").partition("\r\n")
        answer = HTTPHeaders.parse(rest)
        status = int(status_line.split(" ")[1])
        assert status == 405, head  # never 101
        assert answer["Allow"] == "GET"
        assert "Sec-WebSocket-Accept" not in answer
        assert answer["Content-Type"].startswith("application/json")
        assert_security_headers(answer, "HEAD /ws/chat")
        stream.close()
    assert not ctx.hub._all, "a HEAD opened a chat connection"
    # A GET with the same headers still upgrades (the test could fail).
    url = f"ws://127.0.0.1:{port}/ws/chat"
    conn = await websocket_connect(HTTPRequest(url, headers={"Cookie": cookie}))
    assert json.loads(await conn.read_message())["type"] == "hello"
    conn.close()
    assert_clean_log(caplog)


# ------------------------------------------------------------ item 8: bodies over 64 KiB


@pytest.mark.parametrize("size", [65 * KIB, 2 * MIB], ids=["65KiB", "2MiB"])
@pytest.mark.gen_test(timeout=60)
async def test_oversize_content_length_gets_413(ctx, client, make_user, caplog, size):
    caplog.set_level(logging.DEBUG)
    await make_user("alice")
    payload = b'{"username": "alice", "password": "' + b"p" * size + b'"}'
    for path in ("/api/auth/login", "/api/auth/register", "/api/x", "/api/sessions/1"):
        for method in ("POST", "PUT", "DELETE"):
            r = await client.fetch(path, method, body=payload)
            assert_json_error(r, 413, "too_large")
            assert "Set-Cookie" not in r.headers or "plp_session" not in r.headers["Set-Cookie"]
    # Even without an XSRF token: the size is known first (no audit row for a refused body).
    r = await client.fetch("/api/auth/login", "POST", body=payload, xsrf=False)
    assert_json_error(r, 413, "too_large")
    # A form post gets a 413 page with the same headers.
    r = await client.fetch(
        "/login",
        "POST",
        body=b"username=alice&password=" + b"p" * size,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.code == 413 and r.headers["Content-Type"].startswith("text/html"), r.code
    assert_security_headers(r.headers, "page 413")
    assert [u.username for u in await ctx.db.list_users()] == ["alice"]
    assert not await ctx.store.list_for_user(1)
    assert_clean_log(caplog)


@pytest.mark.gen_test(timeout=60)
async def test_200_mib_content_length_refused_from_the_headers(port, caplog):
    caplog.set_level(logging.DEBUG)
    stream = await raw_connection(port)
    await stream.write(
        b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 209715200\r\n\r\n" + b'{"username": "' + b"a" * 1000
    )
    status, headers, payload = await read_response(stream)
    assert status == 413
    assert json.loads(payload)["error"] == "too_large"
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Connection"] == "close"
    assert_security_headers(headers, "413 raw")
    # The rest is read and dropped only up to a bound, then the connection is closed:
    # far less than the 200 MiB announced was ever taken in.
    sent = await send_until_closed(stream, 200 * MIB)
    assert sent < DRAIN_MAX + 32 * MIB, sent
    assert_clean_log(caplog)


@pytest.mark.gen_test(timeout=30)
async def test_expect_100_continue_gets_the_413_instead(port):
    stream = await raw_connection(port)
    await stream.write(
        b"PUT /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 209715200\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    status, headers, payload = await read_response(stream)
    assert status == 413, "no 100 Continue for a body that will be refused"
    assert json.loads(payload)["error"] == "too_large"
    assert headers["Connection"] == "close"
    # And nothing more: no stray 100 or 400 after it, the server closes.
    rest = await asyncio.wait_for(stream.read_until_close(), WAIT)
    assert rest == b""


def _chunked(total: int, piece: int = 10 * KIB) -> bytes:
    out = []
    while total > 0:
        size = min(piece, total)
        out.append(b"%x\r\n" % size + b"z" * size + b"\r\n")
        total -= size
    return b"".join(out) + b"0\r\n\r\n"


@pytest.mark.gen_test(timeout=30)
async def test_chunked_body_over_64_kib_gets_413(port, caplog):
    caplog.set_level(logging.DEBUG)
    stream = await raw_connection(port)
    for path, kind in (("/api/auth/login", "application/json"), ("/login", "text/html")):
        await stream.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + _chunked(300 * KIB)
        )
        status, headers, payload = await read_response(stream)
        assert status == 413, payload[:200]
        assert headers["Content-Type"].startswith(kind)
        assert_security_headers(headers, f"chunked {path}")
        if kind == "application/json":
            assert json.loads(payload)["error"] == "too_large"
    # The whole body was read (and dropped), so the connection is still usable.
    await stream.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, payload = await read_response(stream)
    assert status == 200 and json.loads(payload) == {"status": "ok"}
    stream.close()
    assert_clean_log(caplog)


@pytest.mark.gen_test(timeout=60)
async def test_endless_chunked_body_is_cut_off(port):
    stream = await raw_connection(port)
    await stream.write(
        b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"40000\r\n" + b"y" * 0x40000 + b"\r\n"
    await stream.write(chunk)  # 256 KiB: over the limit
    status, _, payload = await read_response(stream)
    assert status == 413 and json.loads(payload)["error"] == "too_large"
    sent = 0
    try:
        while sent < 200 * MIB:
            await asyncio.wait_for(stream.write(chunk), WAIT)
            sent += len(chunk)
    except StreamClosedError:
        pass
    assert sent < DRAIN_MAX + 32 * MIB, sent


@pytest.mark.gen_test(timeout=30)
async def test_body_of_64_kib_exactly_is_read(client, make_user):
    # Chunked and Content-Length bodies at the limit reach the handler (here: bad password).
    await make_user("alice")
    payload = b'{"username": "alice", "password": "' + b"p" * (64 * KIB - 40) + b'"}'
    payload += b" " * (64 * KIB - len(payload))
    assert len(payload) == 64 * KIB
    r = await client.fetch("/api/auth/login", "POST", body=payload)
    assert r.code in (400, 401), r.body


# ------------------------------------------------- the same attacks against `run.py`


def _raw(port: int, data: bytes, *, read_all: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            piece = sock.recv(65536)
            if not piece:
                break
            received += piece
        if read_all:
            head, _, rest = received.partition(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
            while len(rest) < length:
                rest += sock.recv(65536)
            received = head + b"\r\n\r\n" + rest
        return received


def test_live_server_answers_every_attack_cleanly(live_server):
    """A real `python run.py` (DrainingHTTPServer, its own max_body_size): clean answers, and
    a log with no traceback, no token and no 60 KB line."""
    server = live_server()
    port = server.port
    answer = _raw(port, b"GET /static/%00 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 404"), answer[:100]
    assert b"X-Frame-Options: DENY" in answer
    answer = _raw(
        port,
        b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 209715200\r\n\r\n{",
        read_all=True,
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert answer.endswith(b'"too_large", "message": "The request body is larger than 64 KiB."}')
    assert b"X-Content-Type-Options: nosniff" in answer
    answer = _raw(
        port,
        b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + _chunked(2 * MIB),
        read_all=True,
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    csrf = _raw(port, b"GET /api/auth/csrf HTTP/1.1\r\nHost: x\r\n\r\n", read_all=True)
    token = json.loads(csrf.partition(b"\r\n\r\n")[2])["token"]
    cookie = re.search(rb"Set-Cookie: (_xsrf=[^;]+)", csrf).group(1)
    answer = _raw(
        port,
        b"POST /api/auth/login?_xsrf=" + token.encode() + b" HTTP/1.1\r\nHost: x\r\n"
        b"Cookie: " + cookie + b"\r\nContent-Length: 2\r\n\r\n{}",
        read_all=True,
    )
    assert answer.startswith(b"HTTP/1.1 403") and b'"xsrf"' in answer, answer[:300]
    answer = _raw(port, b"POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 404"), answer[:100]
    answer = _raw(port, b"DELETE /api/sessions/" + b"x" * 60000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 4"), answer[:100]
    server.stop()
    log = server.log_text()
    assert "Traceback" not in log, log[-3000:]
    assert "Malformed HTTP message" not in log, log[-3000:]
    assert token not in log
    assert "_xsrf=***" in log
    # (plp.audit lines are bounded by the audit work of issue 10, not here.)
    long_lines = [
        line[:120] for line in log.splitlines() if len(line) > 1000 and "plp.audit" not in line
    ]
    assert long_lines == [], long_lines
