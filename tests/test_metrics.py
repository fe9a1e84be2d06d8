"""Prometheus metrics: a loopback-only listener whose figures follow what the server does."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from plp.config import Settings
from plp.context import make_context
from plp.storage.sqlite import SQLiteDatabase
from tests.support import LiveServer, free_port, wait_until_blocking
from tests.support.headers import assert_security_headers
from tests.support.web import Chat, Web, run_async, run_plp, scrape


def listening_addresses(port: int) -> list[str]:
    """Addresses with a listening TCP socket on `port`, read from /proc/net/tcp and tcp6."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, port_hex = local.rsplit(":", 1)
            if state != "0A" or int(port_hex, 16) != port:
                continue
            if len(address) == 8:
                found.append(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
            else:
                raw = bytes.fromhex(address)
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.append(socket.inet_ntop(socket.AF_INET6, words))
    return found


def other_local_addresses() -> list[str]:
    """IPv4 addresses of this host other than 127.0.0.1 (127.0.0.2 is always there)."""
    addresses = {"127.0.0.2"}
    if shutil.which("ip"):
        out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True)
        addresses.update(re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out.stdout))
    addresses.discard("127.0.0.1")
    return sorted(addresses)


@pytest.fixture
def metered(live_server) -> tuple[LiveServer, int]:
    port = free_port()
    return live_server(args=["--metrics-port", str(port)]), port


def test_metrics_listener_is_bound_to_loopback_only(metered):
    server, port = metered
    assert listening_addresses(port) == ["127.0.0.1"]
    for address in other_local_addresses():
        with socket.socket() as sock:
            sock.settimeout(5)
            with pytest.raises(OSError):
                sock.connect((address, port))
    assert scrape(port)["plp_sessions_live"] == 0
    # /metrics is not on the public listener, and nothing else is on the metrics one.
    assert Web(server).request("/metrics")[0] == 404
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
    assert err.value.code == 404
    err.value.close()


def test_figures_move_with_logins_and_requests(metered):
    server, port = metered
    web = Web(server)
    assert web.register("counted") == 201
    assert web.request("/api/auth/logout", "POST")[0] == 200
    before = scrape(port)
    assert web.login("counted") == 200
    assert web.login("counted", "not the password") == 401
    after = scrape(port)
    assert after["plp_logins_total"] == before["plp_logins_total"] + 1
    assert after["plp_login_failures_total"] == before["plp_login_failures_total"] + 1
    assert after["plp_sessions_live"] == before["plp_sessions_live"] + 1
    assert after['plp_http_requests_total{status="401"}'] >= 1
    assert (
        after['plp_http_requests_total{status="200"}']
        > before['plp_http_requests_total{status="200"}']
    )
    assert (
        after["plp_http_request_duration_seconds_count"]
        > (before["plp_http_request_duration_seconds_count"])
    )
    assert after["plp_chat_sockets_open"] == 0


def test_chat_sockets_and_messages_counted(metered):
    server, port = metered
    web = Web(server)
    assert web.register("chatty") == 201

    async def talk() -> tuple[dict[str, float], dict[str, float]]:
        chat = await Chat.open(web)
        await chat.send({"type": "join", "channel": 1})
        await chat.expect("joined", channel=1)
        for i in range(2):
            await chat.send({"type": "send", "channel": 1, "text": f"m{i}", "clientId": str(i)})
            await chat.expect("message", clientId=str(i))
        during = await asyncio.get_running_loop().run_in_executor(None, scrape, port)
        await chat.shut()
        return during, {}

    before = scrape(port)
    during, _ = run_async(talk)
    assert before["plp_chat_sockets_open"] == 0
    assert during["plp_chat_sockets_open"] == 1
    assert during["plp_chat_messages_stored_total"] == before["plp_chat_messages_stored_total"] + 2
    wait_until_blocking(
        lambda: scrape(port)["plp_chat_sockets_open"] == 0,
        30,
        "the server to see the socket close",
        0.1,
    )


def test_throttles_counted(live_server):
    port = free_port()
    server = live_server(
        args=["--metrics-port", str(port)], env={"PLP_LOGIN_FAILURES_PER_ACCOUNT": "2"}
    )
    web = Web(server)
    statuses = [web.login("someone", "wrong password here") for _ in range(3)]
    assert statuses == [401, 401, 429]
    figures = scrape(port)
    assert figures["plp_login_failures_total"] == 2
    assert figures["plp_login_throttled_total"] == 1
    assert figures['plp_http_requests_total{status="429"}'] == 1


def test_pruner_runs_are_recorded(live_server):
    port = free_port()
    server = live_server(
        args=["--metrics-port", str(port)],
        env={"PLP_SESSION_PRUNE_INTERVAL": "1", "PLP_SESSION_MAX_AGE": "2"},
    )
    assert Web(server).register("shortlived") == 201
    # Session max age is 2 s and the pruner runs every second: wait for it to remove one.

    def pruned() -> dict[str, float] | None:
        figures = scrape(port)
        return figures if figures["plp_sessions_pruned_total"] >= 1 else None

    figures = wait_until_blocking(pruned, 30, "the pruner to remove the session", 0.2)
    assert figures["plp_sessions_pruned_total"] == 1
    assert figures["plp_session_prune_duration_seconds_count"] >= 1
    assert figures["plp_sessions_live"] == 0


def test_metrics_port_without_prometheus_client_exits_2(tmp_path):
    # Make `import prometheus_client` fail the way it does when the package is absent.
    blocker = tmp_path / "blocker" / "prometheus_client"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named prometheus_client')\n")
    result = run_plp(
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        env={"PYTHONPATH": str(tmp_path / "blocker")},
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "prometheus-client" in lines[0] and "metrics-port" in lines[0]


def test_metrics_port_in_use_exits_2(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run_plp(
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            str(free_port()),
            "--metrics-port",
            str(busy.getsockname()[1]),
        )
    assert result.returncode == 2
    assert "cannot listen" in result.stderr and "Traceback" not in result.stderr


def test_each_context_has_its_own_registry(tmp_path):
    from plp.metrics import Metrics

    contexts = []
    for name in ("a", "b"):
        settings = Settings(
            data_dir=str(tmp_path), db=str(tmp_path / f"{name}.db"), session_secret="s" * 40
        )
        contexts.append(make_context(settings, db=SQLiteDatabase(settings.db_url)))
    try:
        first, second = (Metrics(ctx) for ctx in contexts)
        first.on_request(200, 0.01)
        first.on_audit("login_failed")
        assert first.registry.get_sample_value("plp_http_requests_total", {"status": "200"}) == 1
        ok = {"status": "200"}
        assert second.registry.get_sample_value("plp_http_requests_total", ok) is None
        assert second.registry.get_sample_value("plp_login_failures_total") == 0
    finally:
        for ctx in contexts:
            ctx.hasher.close()


def test_metrics_listener_sends_the_security_headers(live_server):
    # SPEC §10: every response, and no Server version; the metrics listener is no exception.
    port = free_port()
    live_server(args=["--metrics-port", str(port)])
    for path, status in (("/metrics", 200), ("/nope", 404)):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
                code, headers = resp.status, resp.headers
        except urllib.error.HTTPError as err:
            code, headers = err.code, err.headers
            err.close()
        assert code == status, path
        assert_security_headers(SimpleNamespace(headers=headers), path)
        assert headers["Cache-Control"] == "no-store", path
