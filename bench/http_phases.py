"""HTTP figures for bench/run.py: `/api/users/me`, `/healthz`, p99 under a login storm, pages.

Load is `wrk -t1` pinned to the load core. plp, the bare Tornado handler and the Express
peer are alternated run by run under the same load; each figure is the median of the runs.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import time
from dataclasses import dataclass

from bench.common import (
    BENCH,
    LOAD_CORE,
    LOGIN_USERS,
    PASSWORD,
    Config,
    Results,
    Target,
    cpu_seconds,
    pinned,
    request,
    xsrf_token,
)


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNITS[match.group(2)]


def start_wrk(
    port: int, path: str, script: str, seconds: int, connections: int, env: dict[str, str]
) -> subprocess.Popen:
    argv = pinned(LOAD_CORE) + [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "30s",
        "--latency",
        "-s",
        str(BENCH / script),
        f"http://127.0.0.1:{port}{path}",
    ]
    return subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish_wrk(proc: subprocess.Popen) -> WrkResult:
    out, _ = proc.communicate(timeout=120)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if not (rps and total and p50 and p99):
        raise RuntimeError("could not read wrk output:\n" + out)
    result = WrkResult(
        float(rps.group(1)),
        _ms(p50.group(1)),
        _ms(p99.group(1)),
        int(total.group(1)),
        int(bad.group(1)) if bad else 0,
    )
    if errors:
        print(f"# wrk socket errors: {errors.group(1)}", flush=True)
    return result


def wrk(port: int, path: str, script: str, seconds: int, connections: int, env: dict) -> WrkResult:
    return finish_wrk(start_wrk(port, path, script, seconds, connections, env))


def measure(target: Target, path: str, seconds: int, connections: int) -> tuple[float, ...]:
    """(req/s, p99 ms, server CPU µs per request) of one wrk run; any non-2xx is an error."""
    cpu = cpu_seconds(target.pid)
    got = wrk(target.port, path, "me.lua", seconds, connections, {"BENCH_COOKIE": target.cookie})
    cpu = cpu_seconds(target.pid) - cpu
    if got.bad:
        raise RuntimeError(f"{target.name} answered {got.bad} non-2xx to {path}")
    return got.rps, got.p99_ms, cpu / got.requests * 1e6


def alternate(
    cfg: Config, res: Results, targets: list[Target], figure: str, paths: dict[str, str]
) -> None:
    """wrk each target on its path, alternated cfg.http_runs times; medians as
    `<name>_<figure>_rps`, `_p99_ms` and `_cpu_us`."""
    for target in targets:  # warm-up
        measure(target, paths[target.name], 1, cfg.http_connections)
    runs: dict[str, list[tuple[float, ...]]] = {t.name: [] for t in targets}
    for _ in range(cfg.http_runs):
        for target in targets:
            got = measure(target, paths[target.name], cfg.http_seconds, cfg.http_connections)
            runs[target.name].append(got)
    for name, got in runs.items():
        res.add(f"{name}_{figure}_rps", statistics.median(r[0] for r in got), "req/s")
        res.add(f"{name}_{figure}_p99_ms", statistics.median(r[1] for r in got), "ms")
        res.add(f"{name}_{figure}_cpu_us", statistics.median(r[2] for r in got), "us/req")


def phase_http(cfg: Config, res: Results, targets: list[Target]) -> None:
    """`GET /api/users/me` with a session, then the no-session route (`/healthz`, Express
    `/hello`), on plp, the bare Tornado handler and the Express peer."""
    alternate(cfg, res, targets, "me", {t.name: "/api/users/me" for t in targets})
    alternate(cfg, res, targets, "health", {t.name: t.health for t in targets})


def phase_login_p99(cfg: Config, res: Results, targets: list[Target]) -> None:
    """p99 of /api/users/me while 20 clients log in non-stop, and the login throughput."""
    runs: dict[str, list[tuple[float, float, float]]] = {t.name: [] for t in targets}
    for _ in range(cfg.p99_runs):
        for target in targets:
            runs[target.name].append(login_storm(cfg, target))
    for name, got in runs.items():
        if any(r[1] >= cfg.p99_seconds * 1000 for r in got):
            res.notes.append(
                f"{name}: some runs answered no /api/users/me at all during the login storm; "
                f"their p50/p99 are counted as the run's length ({cfg.p99_seconds} s), a floor"
            )
        res.add(f"{name}_me_p50_under_login_ms", statistics.median(r[0] for r in got), "ms")
        res.add(f"{name}_me_p99_under_login_ms", statistics.median(r[1] for r in got), "ms")
        res.add(f"{name}_login_rps", statistics.median(r[2] for r in got), "logins/s")


def login_storm(cfg: Config, target: Target) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, logins/s) of one run; the XSRF pair is ignored by the Express peer."""
    xsrf = xsrf_token(target.port) if target.name == "plp" else "unused"
    login_env = {
        "BENCH_XSRF": xsrf,
        "BENCH_PASSWORD": PASSWORD,
        "BENCH_LOGIN_USERS": str(LOGIN_USERS),
    }
    login_proc = start_wrk(
        target.port, "/api/auth/login", "login.lua", cfg.p99_seconds + 2, LOGIN_USERS, login_env
    )
    time.sleep(1.0)  # the login load is running before latency is measured
    got = wrk(
        target.port, "/api/users/me", "me.lua", cfg.p99_seconds, 10, {"BENCH_COOKIE": target.cookie}
    )
    logged = finish_wrk(login_proc)
    if not got.requests:  # every /me waited out the run: its latency is at least that long
        got.p50_ms = got.p99_ms = cfg.p99_seconds * 1000.0
    if got.bad or logged.bad:
        raise RuntimeError(
            f"{target.name}: non-2xx under login load: me {got.bad}, login {logged.bad}"
        )
    return got.p50_ms, got.p99_ms, logged.rps


def phase_pages(cfg: Config, res: Results, plp: Target) -> None:
    """Signed-in pages (`/chat`, `/classes` once it exists) and a static file, req/s."""
    for name, path in (("chat", "/chat"), ("classes", "/classes")):
        status, _, _ = request(plp.port, "GET", path, headers={"Cookie": plp.cookie})
        if status != 200:
            res.notes.append(f"GET {path} answered {status}: its req/s is n/a")
            continue
        got = measure(plp, path, cfg.page_seconds, cfg.http_connections)
        res.add(f"page_{name}_rps", got[0], "req/s")
        res.add(f"page_{name}_p99_ms", got[1], "ms")
    status, headers, body = request(plp.port, "GET", "/chat", headers={"Cookie": plp.cookie})
    found = re.search(rb'/static/[^"?]+\.css(\?v=[^"]+)?', body)
    if found is None:
        res.notes.append("no stylesheet link found in /chat")
        return
    url = found.group().decode()
    status, headers, body = request(plp.port, "GET", url, headers={"Accept-Encoding": "gzip"})
    res.notes.append(
        f"{url}: {status}, Cache-Control {headers.get('cache-control', ['-'])[0]!r}, "
        f"Content-Encoding {headers.get('content-encoding', ['identity'])[0]}, {len(body)} B"
    )
    got = measure(plp, url, cfg.page_seconds, cfg.http_connections)
    res.add("static_css_rps", got[0], "req/s")
