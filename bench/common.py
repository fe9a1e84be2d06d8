"""What bench/run.py and bench/chat_phases.py share: the run's settings and figures, pinned
server processes, and the HTTP calls that sign a benchmark user in. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

PASSWORD = "bench-password-not-common-1"
SECRET = "bench-session-secret-" + "k" * 40
SERVER_CORE = 0
LOAD_CORE = 1
BCRYPT_ROUNDS = 10
LOGIN_USERS = 20
# Abuse limits raised for the benchmark (SPEC §9 settings); printed with the results.
RAISED_LIMITS = {
    "sockets-per-user": "100000",
    "sockets-per-address": "100000",
    "chat-rate": "1000000/1",
    "sessions-per-user": "1000",
}


@dataclass
class Config:
    """How long and how hard each phase runs."""

    quick: bool
    http_seconds: int = 8
    http_runs: int = 3
    http_connections: int = 32
    p99_seconds: int = 10
    p99_runs: int = 3
    fanout_subscribers: int = 200
    fanout_messages: int = 1000
    fanout_runs: int = 3
    paced_rate: int = 4000
    paced_seconds: float = 8.0
    idle_sockets: tuple[int, ...] = (2000, 19000)  # the hard fd limit here is 20,000
    connect_sockets: int = 1000
    connect_runs: int = 3
    page_seconds: int = 4
    channel_sizes: tuple[int, ...] = (50, 200, 1000)
    store_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)

    def __post_init__(self) -> None:
        if self.quick:
            self.http_seconds = 3
            self.http_runs = 1
            self.p99_seconds = 4
            self.p99_runs = 1
            self.fanout_messages = 150
            self.fanout_runs = 1
            self.paced_seconds = 3.0
            self.idle_sockets = (2000,)
            self.connect_sockets = 500
            self.connect_runs = 1
            self.page_seconds = 2
            self.channel_sizes = (50, 200)
            self.store_sizes = (10_000, 100_000)


@dataclass
class Results:
    """Figures as they are measured: printed at once and kept for the table."""

    values: dict[str, tuple[float, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: float, unit: str) -> None:
        self.values[name] = (value, unit)
        shown = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        print(f"{name} {shown} {unit}", flush=True)

    def get(self, name: str) -> float | None:
        item = self.values.get(name)
        return item[0] if item else None


# ----------------------------------------------------------------------------- processes


def pinned(core: int) -> list[str]:
    """The taskset prefix that pins a command to one core, where taskset exists."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > core:
        return ["taskset", "-c", str(core)]
    return []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> int:
    """Resident set size of a process, KiB."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), seconds."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the comm field.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A server process pinned to the server core, stopped by SIGTERM."""

    def __init__(self, name: str, argv: list[str], port: int, env: dict[str, str], log: Path):
        self.name = name
        self.port = port
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            pinned(SERVER_CORE) + argv,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=str(ROOT),
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, path: str = "/healthz", timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.log_path}")
            try:
                status, _, _ = request(self.port, "GET", path)
                if status < 500:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start within {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def request(
    port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, list[str]], bytes]:
    """One HTTP request to 127.0.0.1; (status, headers as lists, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = json.dumps(body) if body is not None else None
        all_headers = {"X-Forwarded-Proto": "https", **(headers or {})}
        if payload is not None:
            all_headers["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        data = response.read()
        got: dict[str, list[str]] = {}
        for name, value in response.getheaders():
            got.setdefault(name.lower(), []).append(value)
        return response.status, got, data
    finally:
        conn.close()


def cookie_value(headers: dict[str, list[str]], name: str) -> str:
    for line in headers.get("set-cookie", []):
        key, _, rest = line.partition("=")
        if key.strip() == name:
            return rest.split(";", 1)[0]
    raise RuntimeError(f"no {name} cookie in response")


def xsrf_token(port: int) -> str:
    status, headers, _ = request(port, "GET", "/api/auth/csrf")
    if status != 200:
        raise RuntimeError(f"/api/auth/csrf answered {status}")
    return cookie_value(headers, "_xsrf")


def login(port: int, username: str, xsrf: str) -> str:
    """Sign in through the API; the `Cookie` header value that carries the new session."""
    status, headers, data = request(
        port,
        "POST",
        "/api/auth/login",
        {"username": username, "password": PASSWORD},
        {"Cookie": f"_xsrf={xsrf}", "X-XSRFToken": xsrf, "X-Forwarded-For": "127.0.0.4"},
    )
    if status != 200:
        raise RuntimeError(f"login {username} answered {status}: {data[:200]!r}")
    name = "__Host-plp_session"
    return f"{name}={cookie_value(headers, name)}"


# ----------------------------------------------------------------------------- servers


@dataclass
class Target:
    """A server under test and what the load needs to talk to it: plp or the Express peer."""

    name: str  # "plp" or "express"
    server: Server
    cookie: str = ""  # the `bench` user's session, as a `Cookie` header value
    proto: str = "plp"  # wsload.py protocol
    health: str = "/healthz"  # the no-session JSON route

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def pid(self) -> int:
        return self.server.pid


def plp_command(
    data_dir: Path, port: int, root: Path | None = None
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of plp as every bench runs it: production mode, the bench
    secret, trust-proxy, bcrypt cost 10 and the raised abuse limits.

    `root` (or PLP_BENCH_PLP) runs another checkout's plp under the same load: before/after.
    """
    root = root or Path(os.environ.get("PLP_BENCH_PLP") or ROOT)
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "PLP_ENV": "production",
        "SESSION_SECRET": SECRET,
        "PYTHONUNBUFFERED": "1",
    }
    argv = [
        sys.executable,
        str(root / "run.py"),
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--trust-proxy",
        "--bcrypt-rounds",
        str(BCRYPT_ROUNDS),
    ]
    for name, value in RAISED_LIMITS.items():
        argv += [f"--{name}", value]
    return argv, env


def start_plp(
    data_dir: Path, logs: Path, extra: list[str] | None = None, root: Path | None = None
) -> Server:
    """plp (`plp_command`) on a free port, pinned to the server core, ready."""
    port = free_port()
    argv, env = plp_command(data_dir, port, root)
    server = Server("plp", argv + (extra or []), port, env, logs / f"plp-{port}.log")
    server.wait_ready()
    return server


def start_script(name: str, logs: Path) -> Server:
    port = free_port()
    argv = [sys.executable, str(BENCH / f"{name}.py"), str(port)]
    server = Server(name, argv, port, {**os.environ}, logs / f"{name}.log")
    server.wait_ready("/healthz")
    return server
