"""Operations on real `python run.py` processes: restart, snapshot, signals, TLS, proxy, logs."""

from __future__ import annotations

import datetime
import http.client
import json
import os
import signal
import ssl
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from tornado.web import decode_signed_value

from plp.auth.passwords import BCRYPT_THREAD_NICE
from plp.server import FORCE_AFTER
from plp.sessions.base import hash_token
from plp.snapshot import SNAPSHOT_NAME
from tests.support import LIVE_SECRET, ROOT, LiveServer, free_port, need, wait_until_blocking
from tests.support.web import LIVE_PASSWORD, Chat, Web, run_async, run_plp

OTHER_SECRET = "another-live-secret-" + "z" * 40


def session_token(web: Web, cookie_name: str = "plp_session", secret: str = LIVE_SECRET) -> str:
    """The raw session token inside the signed cookie (for proving it is never stored)."""
    raw = decode_signed_value(secret, cookie_name, web.cookies[cookie_name])
    assert raw is not None
    return raw.decode()


def restart(data_dir: Path, web: Web | None = None, **kwargs: Any) -> LiveServer:
    """A new server process on an existing data dir (its own port, so its own log file)."""
    server = LiveServer(data_dir, **kwargs).start()
    started.append(server)
    if web is not None:
        web.server = server
    return server


started: list[LiveServer] = []


@pytest.fixture(autouse=True)
def _stop_restarted():
    yield
    while started:
        started.pop().stop()


# -- sessions across restarts ---------------------------------------------------------------


def test_sessions_survive_graceful_restart(live_server):
    server = live_server()
    web = Web(server)
    assert web.register("keeper") == 201
    token = session_token(web)
    cookie_value = web.cookies["plp_session"]
    assert server.stop() == 0

    snapshot = server.data_dir / SNAPSHOT_NAME
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    content = snapshot.read_text()
    assert hash_token(token) in content  # the session is in there, under its hash...
    assert token not in content  # ...and neither the token nor the cookie is
    assert cookie_value not in content
    assert LIVE_SECRET not in content

    again = restart(server.data_dir, web)
    assert web.me() == 200
    assert not snapshot.exists(), "the snapshot must be deleted once loaded"
    assert "restored 1 of 1 sessions" in again.log_text()


def test_session_ended_after_start_stays_ended_after_a_crash(live_server):
    server = live_server()
    web = Web(server)
    assert web.register("crashy") == 201
    stale = dict(web.cookies)
    assert server.stop() == 0
    again = restart(server.data_dir, web)
    assert web.request("/api/auth/logout", "POST")[0] == 200
    again.stop(signal.SIGKILL)  # a crash: no snapshot written at exit
    third = restart(server.data_dir, web)
    web.cookies = stale
    assert web.me() == 401
    assert "no session snapshot" in third.log_text()


def test_new_secret_not_listing_the_old_one_ends_sessions(live_server):
    server = live_server()
    web = Web(server)
    assert web.register("forgotten") == 201
    assert server.stop() == 0
    other = restart(server.data_dir, web, env={"SESSION_SECRET": OTHER_SECRET})
    assert web.me() == 401
    log = other.log_text()
    assert "session snapshot" in log and "different SESSION_SECRET" in log
    assert LIVE_SECRET not in log and OTHER_SECRET not in log
    assert not (server.data_dir / SNAPSHOT_NAME).exists()


def test_rotated_secret_listing_the_old_one_keeps_sessions(live_server):
    server = live_server()
    web = Web(server)
    assert web.register("rotator") == 201
    assert server.stop() == 0
    # The old secret is listed as previous: sessions and cookies stay valid, and the cookie
    # is re-issued under the new secret.
    rotated = restart(
        server.data_dir,
        web,
        env={"SESSION_SECRET": OTHER_SECRET, "SESSION_SECRET_PREVIOUS": LIVE_SECRET},
    )
    assert web.me() == 200
    assert decode_signed_value(OTHER_SECRET, "plp_session", web.cookies["plp_session"])
    assert "restored 1 of 1 sessions" in rotated.log_text()
    # And the snapshot written under the new secret is read under the new secret.
    assert rotated.stop() == 0
    restart(server.data_dir, web, env={"SESSION_SECRET": OTHER_SECRET})
    assert web.me() == 200


def _real_snapshot(live_server: Any) -> tuple[LiveServer, Web, bytes]:
    server = live_server()
    web = Web(server)
    assert web.register("victim") == 201
    assert server.stop() == 0
    return server, web, (server.data_dir / SNAPSHOT_NAME).read_bytes()


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda data: data[: len(data) // 2], "truncated"),
        (lambda data: data[:-30] + b"\n", "altered"),
        (lambda data: b"", "truncated or not a snapshot"),
        (lambda data: b"\x00\xff garbage \n\x01", "not valid JSON"),
        (lambda data: data.replace(b'"version":1', b'"version":99', 1), "format version 99"),
        (lambda data: data.replace(b'"user_id":1', b'"user_id":2', 1), "altered"),
    ],
    ids=["truncated", "cut-body", "empty", "garbage", "wrong-version", "tampered"],
)
def test_damaged_snapshot_is_ignored_with_one_line(live_server, damage, reason):
    server, web, data = _real_snapshot(live_server)
    (server.data_dir / SNAPSHOT_NAME).write_bytes(damage(data))
    again = restart(server.data_dir, web)
    assert web.me() == 401  # nothing restored from a damaged file
    lines = [
        line for line in again.log_text().splitlines() if "snapshot" in line and "ignored" in line
    ]
    assert len(lines) == 1, again.log_text()
    assert reason in lines[0]
    assert Web(again).register("newcomer") == 201  # the server works normally


def test_unreadable_snapshot_is_ignored(live_server):
    server, web, _ = _real_snapshot(live_server)
    path = server.data_dir / SNAPSHOT_NAME
    path.unlink()
    path.mkdir()  # reading a directory fails even as root
    again = restart(server.data_dir, web)
    assert web.me() == 401
    assert "cannot read it" in again.log_text()


def test_expired_sessions_are_dropped_at_restore(live_server):
    server = live_server(env={"PLP_SESSION_IDLE_TIMEOUT": "1"})
    web = Web(server)
    assert web.register("sleepy") == 201
    assert server.stop() == 0
    # The real clock is the subject: the 1 s idle timeout passes while the server is down.
    time.sleep(1.2)
    again = restart(server.data_dir, web, env={"PLP_SESSION_IDLE_TIMEOUT": "1"})
    assert "restored 0 of 1 sessions" in again.log_text()
    assert web.me() == 401


# -- signals -----------------------------------------------------------------------------


def _slow_register(server: LiveServer, web: Web) -> http.client.HTTPConnection:
    """Start a registration that takes about a second (bcrypt) on a kept-alive connection."""
    conn = web.connection()
    conn.request("GET", "/api/auth/csrf")
    web.read(conn)  # the connection is now accepted and idle in the server
    body = json.dumps({"username": "slowpoke", "password": LIVE_PASSWORD}).encode()
    conn.request(
        "POST",
        "/api/auth/register",
        body=body,
        headers={
            "Content-Type": "application/json",
            "X-XSRFToken": web.cookies["_xsrf"],
            "Cookie": f"_xsrf={web.cookies['_xsrf']}",
        },
    )
    # The bytes are sent; wait until the server is hashing them (bcrypt at cost 14 then keeps
    # the request in flight for well over a second).
    wait_until_blocking(
        lambda: _hashing(server.proc.pid), what="the server to start hashing", interval=0.01
    )
    return conn


def _hashing(pid: int) -> bool:
    """True while one of the process's bcrypt threads runs (they alone are niced, by
    plp.auth.passwords; the pool was started by the warm-up hash before listening)."""
    for stat_file in Path(f"/proc/{pid}/task").glob("*/stat"):
        if stat_file.parent.name == str(pid):
            continue  # the main thread
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # the thread ended meanwhile
            continue
        if fields[0] == "R" and int(fields[16]) == BCRYPT_THREAD_NICE:  # state, nice
            return True
    return False


def test_sigterm_lets_an_in_flight_request_finish(live_server):
    server = live_server(env={"PLP_BCRYPT_ROUNDS": "14"})
    web = Web(server)
    conn = _slow_register(server, web)
    server.proc.send_signal(signal.SIGTERM)
    status, _, body = web.read(conn)
    conn.close()
    assert status == 201, body
    assert server.proc.wait(30) == 0  # not stop(): a second signal would force the exit
    server.stop()
    assert "waiting for 1 requests in flight" in server.log_text()
    restart(server.data_dir, web, env={"PLP_BCRYPT_ROUNDS": "14"})
    assert web.me() == 200  # committed, acknowledged, and its session restored


def test_second_signal_exits_at_once(live_server):
    # Cost 15 keeps the registration, and so the shutdown, busy for about 3 s here.
    server = live_server(env={"PLP_BCRYPT_ROUNDS": "15"})
    web = Web(server)
    conn = _slow_register(server, web)
    server.proc.send_signal(signal.SIGTERM)
    # The real clock is the subject: a second signal later than FORCE_AFTER is an operator
    # insisting, not a duplicate delivery.
    time.sleep(FORCE_AFTER + 0.5)
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(30) == 128 + signal.SIGINT
    server.stop()
    conn.close()
    assert "second signal" in server.log_text()
    assert not (server.data_dir / SNAPSHOT_NAME).exists()


def test_duplicate_signal_delivery_stays_graceful(live_server):
    # systemd signals the whole cgroup and a terminal the whole process group, so the same
    # stop request can arrive twice at once; that must not count as "force".
    server = live_server()
    assert Web(server).register("twice") == 201
    server.proc.send_signal(signal.SIGTERM)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    server.stop()
    assert (server.data_dir / SNAPSHOT_NAME).exists()


def test_sigint_is_graceful_too(live_server):
    server = live_server()
    assert Web(server).register("ctrlc") == 201
    assert server.stop(signal.SIGINT) == 0
    assert (server.data_dir / SNAPSHOT_NAME).exists()


# -- TLS and production --------------------------------------------------------------------


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the cryptography package."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


PRODUCTION = {"PLP_ENV": "production"}


def test_production_over_tls(live_server, tmp_path):
    cert, key = make_certificate(tmp_path / "tls")
    server = live_server(
        args=["--tls-cert", str(cert), "--tls-key", str(key)], env=PRODUCTION, scheme="https"
    )
    web = Web(server)
    status, headers, _ = web.request("/healthz")
    assert status == 200
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    assert web.register("secure.kid") == 201
    session = [h for h in web.set_cookie_headers if h.startswith("__Host-plp_session=")]
    assert session, web.set_cookie_headers
    attributes = [part.strip().lower() for part in session[-1].split(";")]
    assert "secure" in attributes and "httponly" in attributes and "path=/" in attributes
    assert not any(a.startswith("domain") for a in attributes)
    assert web.me() == 200

    async def chat() -> str:
        conn = await Chat.open(web, origin=server.url)  # wss, same origin
        await conn.send({"type": "ping"})
        frame = await conn.expect("pong")
        await conn.shut()
        return frame["type"]

    assert run_async(chat) == "pong"
    # The certificate really is the one served.
    context = ssl.create_default_context(cafile=str(cert))
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200
    conn.close()


def test_development_over_tls_has_no_hsts(live_server, tmp_path):
    cert, key = make_certificate(tmp_path / "tls")
    server = live_server(args=["--tls-cert", str(cert), "--tls-key", str(key)], scheme="https")
    status, headers, _ = Web(server).request("/healthz")
    assert status == 200
    assert "Strict-Transport-Security" not in headers


def test_production_behind_proxy_hsts_only_for_https(live_server):
    server = live_server(args=["--trust-proxy"], env=PRODUCTION)
    web = Web(server)
    _, headers, _ = web.request("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" in headers
    _, headers, _ = web.request("/healthz", headers={"X-Forwarded-Proto": "http"})
    assert "Strict-Transport-Security" not in headers
    _, headers, _ = web.request("/healthz")
    assert "Strict-Transport-Security" not in headers


def test_production_without_trust_proxy_ignores_forwarded_proto(live_server):
    server = live_server(env=PRODUCTION)
    _, headers, _ = Web(server).request("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in headers


@pytest.mark.parametrize("problem", ["missing-cert", "garbage-cert", "wrong-key", "key-is-dir"])
def test_bad_certificate_exits_2_with_one_line(tmp_path, problem):
    cert, key = make_certificate(tmp_path / "tls")
    other_cert, other_key = make_certificate(tmp_path / "other")
    if problem == "missing-cert":
        cert = tmp_path / "nope.pem"
    elif problem == "garbage-cert":
        cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    elif problem == "wrong-key":
        key = other_key
    else:
        key = tmp_path
    result = run_plp(
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        str(free_port()),
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("plp: error:") and "tls-" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "plp.sqlite3").exists()  # refused before opening anything


# -- trust-proxy -----------------------------------------------------------------------------

FORGED = "203.0.113.77"


def _session_ip(web: Web) -> str:
    status, _, body = web.request("/api/sessions")
    assert status == 200
    (current,) = [s for s in body["sessions"] if s["current"]]
    return current["ip"]


def test_forwarded_for_ignored_without_trust_proxy(live_server):
    server = live_server()
    web = Web(server)
    assert web.register("direct", **{"X-Forwarded-For": FORGED}) == 201
    assert _session_ip(web) == "127.0.0.1"


def test_forwarded_for_used_with_trust_proxy(live_server):
    server = live_server(args=["--trust-proxy"])
    web = Web(server)
    # The proxy appends the real peer; the last entry is the one it vouches for.
    forwarded = f"198.51.100.9, {FORGED}"
    assert web.register("proxied", **{"X-Forwarded-For": forwarded}) == 201
    assert _session_ip(web) == FORGED


def _fail_logins(web: Web, count: int, forwarded: str) -> list[int]:
    return [
        web.login(f"nobody{i}", "wrong password here", **{"X-Forwarded-For": forwarded})
        for i in range(count)
    ]


def test_address_throttle_without_trust_proxy_counts_the_peer(live_server):
    server = live_server(env={"PLP_LOGIN_FAILURES_PER_ADDRESS": "3"})
    web = Web(server)
    assert _fail_logins(web, 3, "198.51.100.1") == [401, 401, 401]
    # A forged header does not buy a fresh address: the peer is what counts.
    assert _fail_logins(web, 1, "198.51.100.2") == [429]


def test_address_throttle_with_trust_proxy_counts_the_forwarded_address(live_server):
    server = live_server(args=["--trust-proxy"], env={"PLP_LOGIN_FAILURES_PER_ADDRESS": "3"})
    web = Web(server)
    assert _fail_logins(web, 4, "198.51.100.1") == [401, 401, 401, 429]
    assert _fail_logins(web, 1, "198.51.100.2") == [401]


# -- logging ---------------------------------------------------------------------------------


def test_json_logs_parse_and_hold_no_secrets(live_server):
    server = live_server(args=["--log-format", "json"])
    web = Web(server)
    assert web.register("logger", "pass phrase to hide") == 201
    token = session_token(web)
    cookie = web.cookies["plp_session"]
    xsrf = web.cookies["_xsrf"]
    assert web.request("/api/auth/logout", "POST")[0] == 200
    assert web.login("logger", "pass phrase to hide") == 200
    assert web.login("logger", "wrong phrase entirely") == 401
    web.request("/api/users/me?token=leaky-query-token&x=1")
    web.request("/no/such/page")
    assert server.stop() == 0
    text = server.log_text()
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    access = [r for r in records if r["logger"] == "plp.access"]
    assert {r["status"] for r in access} >= {200, 201, 401, 404}
    assert all(isinstance(r["ms"], float) and r["method"] for r in access)
    assert any("token=***" in r["uri"] for r in access)
    for secret in (token, cookie, xsrf, "pass phrase to hide", "leaky-query-token", LIVE_SECRET):
        assert secret not in text
    assert any(r["logger"] == "plp.audit" for r in records)


def test_text_log_has_one_line_per_request(live_server):
    server = live_server()
    web = Web(server)
    for _ in range(3):
        web.request("/healthz")
    assert server.stop() == 0
    lines = [line for line in server.log_text().splitlines() if "GET /healthz" in line]
    # The live-server fixture polls /healthz itself while starting; ours are the last three.
    assert len(lines) >= 3
    assert all(line.split("plp.access: ")[1].startswith("200 GET /healthz ") for line in lines)
    assert all(line.endswith("ms") for line in lines)


# -- behind nginx (deploy/nginx.conf) --------------------------------------------------------


def render_nginx(tmp_path: Path, plp_port: int, cert: Path, key: Path) -> tuple[Path, int, int]:
    """A runnable nginx.conf that includes deploy/nginx.conf with test ports and paths."""
    http_port, https_port = free_port(), free_port()
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    replacements = {
        "127.0.0.1:8888": f"127.0.0.1:{plp_port}",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "/etc/letsencrypt/live/learn.school.example/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/learn.school.example/privkey.pem": str(key),
    }
    for old, new in replacements.items():
        assert old in site, f"deploy/nginx.conf no longer has {old!r}"
        site = site.replace(old, new)
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "site.conf").write_text(site)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
user root;
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/site.conf;
}}
"""
    )
    return conf, http_port, https_port


@pytest.fixture
def nginx_front(live_server, tmp_path):
    """plp in production with trust-proxy, behind nginx configured by deploy/nginx.conf."""
    import shutil

    nginx = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin")
    need(nginx is not None, "nginx is not installed (apt-get install nginx-light)")
    server = live_server(args=["--trust-proxy"], env=PRODUCTION)
    cert, key = make_certificate(tmp_path / "tls")
    conf, http_port, https_port = render_nginx(tmp_path, server.port, cert, key)
    check = subprocess.run([nginx, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(
        [nginx, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    front = LiveServer(tmp_path / "front", port=https_port, scheme="https")

    def answering() -> bool:
        assert proc.poll() is None, "nginx exited"
        return front._healthy()

    wait_until_blocking(answering, what="nginx to answer")
    yield server, front, http_port
    proc.terminate()
    proc.wait(20)


def test_behind_nginx(nginx_front):
    server, front, http_port = nginx_front
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    conn.request("GET", "/login", headers={"Host": "learn.school.example"})
    response = conn.getresponse()
    assert response.status == 301
    assert response.headers["Location"] == "https://learn.school.example/login"
    conn.close()

    web = Web(front)
    status, headers, _ = web.request("/healthz")
    assert status == 200 and "Strict-Transport-Security" in headers
    assert not any(ch.isdigit() for ch in headers.get("Server", ""))  # no version shown
    # A forged X-Forwarded-For is kept, but nginx appends the real peer, and plp takes that.
    assert web.register("proxied.kid", **{"X-Forwarded-For": FORGED}) == 201
    assert any(h.startswith("__Host-plp_session=") for h in web.set_cookie_headers)
    assert _session_ip(web) == "127.0.0.1"
    status, _, _ = web.request("/metrics")
    assert status == 404

    # Chat through nginx's WebSocket location, with the Origin a browser would send.
    async def chat() -> dict:
        conn = await Chat.open(web, origin=front.url)
        await conn.send({"type": "join", "channel": 1})
        await conn.expect("joined", channel=1)
        await conn.send({"type": "send", "channel": 1, "text": "via nginx", "clientId": "n"})
        frame = await conn.expect("message", clientId="n")
        await conn.shut()
        return frame

    assert run_async(chat)["message"]["text"] == "via nginx"


# -- chat across a restart -------------------------------------------------------------------


def test_sigterm_during_chat_keeps_sessions_and_acknowledged_messages(live_server):
    server = live_server()
    alice, bob = Web(server), Web(server)
    assert alice.register("alice") == 201 and bob.register("bob") == 201

    async def lesson() -> tuple[list[int], int | None, int | None]:
        a, b = await Chat.open(alice), await Chat.open(bob)
        for chat in (a, b):
            await chat.send({"type": "join", "channel": 1})
            await chat.expect("joined", channel=1)
        acked = []
        for i in range(3):
            await a.send({"type": "send", "channel": 1, "text": f"line {i}", "clientId": f"c{i}"})
            acked.append((await a.expect("message", clientId=f"c{i}"))["message"]["id"])
        await b.expect("message", channel=1)
        server.proc.send_signal(signal.SIGTERM)
        return acked, await a.close_code(), await b.close_code()

    acked, code_a, code_b = run_async(lesson)
    assert (code_a, code_b) == (1001, 1001)
    assert server.proc.wait(30) == 0
    server.stop()

    again = restart(server.data_dir, alice)
    bob.server = again
    assert alice.me() == 200 and bob.me() == 200  # nobody was logged out
    status, _, body = alice.request("/api/channels/1/messages")
    assert status == 200
    assert [m["id"] for m in body["messages"]] == acked
    assert [m["text"] for m in body["messages"]] == ["line 0", "line 1", "line 2"]

    async def reconnect() -> str:
        chat = await Chat.open(alice)
        await chat.send({"type": "join", "channel": 1})
        await chat.expect("joined", channel=1)
        await chat.send({"type": "send", "channel": 1, "text": "back again", "clientId": "r"})
        frame = await chat.expect("message", clientId="r")
        await chat.shut()
        return frame["message"]["text"]

    assert run_async(reconnect) == "back again"
