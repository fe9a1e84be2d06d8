"""The plp benchmark: `python bench/run.py [--quick]` (issue 5).

Starts plp in production mode (all security on) pinned to core 0, drives it from load
processes pinned to core 1, measures the same-run baselines (a bare Tornado JSON handler and
a naive Tornado broadcast server), and prints one `name value unit` line per figure followed
by a Markdown table. Every load is bounded in count and time; the full run takes a few
minutes, `--quick` well under one. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Run as `python bench/run.py`: `bench` and `plp` are imported from this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import chat_phases  # noqa: E402
from bench.common import (  # noqa: E402
    BCRYPT_ROUNDS,
    BENCH,
    LOAD_CORE,
    LOGIN_USERS,
    PASSWORD,
    RAISED_LIMITS,
    ROOT,
    SERVER_CORE,
    Config,
    Results,
    Server,
    cpu_seconds,
    login,
    pinned,
    rss_kib,
    start_plp,
    start_script,
    xsrf_token,
)

# ----------------------------------------------------------------------------- wrk


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


# ----------------------------------------------------------------------------- setup


def prepare_database(data_dir: Path, extra_users: int) -> None:
    """Users straight in the SQLite file (one bcrypt hash shared), before plp starts."""
    from plp.auth.passwords import hash_password
    from plp.storage.sqlite import SQLiteDatabase

    async def fill() -> None:
        db = SQLiteDatabase(str(data_dir / "plp.sqlite3"))
        await db.migrate()
        hashed = hash_password(PASSWORD, BCRYPT_ROUNDS)
        await db.create_user("bench", "Bench", "student", hashed)
        for i in range(LOGIN_USERS):
            await db.create_user(f"login{i}", f"Login {i}", "student", hashed)
        for i in range(extra_users):
            await db.create_user(f"sock{i}", f"Socket {i}", "student", hashed)
        await db.close()

    asyncio.run(fill())


# ----------------------------------------------------------------------------- phases


def median(values: list[float]) -> float:
    return statistics.median(values)


def phase_http(
    cfg: Config, res: Results, plp: Server, base: Server, cookies: dict[int, str]
) -> None:
    """GET /api/users/me req/s and server CPU per request: plp and the bare handler,
    alternated; medians of the runs."""
    runs: dict[str, list[tuple[float, float]]] = {"plp": [], "base": []}
    servers = {"plp": plp, "base": base}
    for server in servers.values():  # warm-up
        env = {"BENCH_COOKIE": cookies.get(server.port, "")}
        wrk(server.port, "/api/users/me", "me.lua", 1, cfg.http_connections, env)
    for _ in range(cfg.http_runs):
        for name, server in servers.items():
            env = {"BENCH_COOKIE": cookies.get(server.port, "")}
            cpu = cpu_seconds(server.pid)
            got = wrk(
                server.port, "/api/users/me", "me.lua", cfg.http_seconds, cfg.http_connections, env
            )
            cpu = cpu_seconds(server.pid) - cpu
            if got.bad:
                raise RuntimeError(f"{name} answered {got.bad} non-2xx to /api/users/me")
            runs[name].append((got.rps, cpu / got.requests * 1e6))
    for name, label in (("plp", "me"), ("base", "baseline_json")):
        res.add(f"{label}_rps", median([r[0] for r in runs[name]]), "req/s")
        res.add(f"{label}_cpu_us", median([r[1] for r in runs[name]]), "us/req")
    res.add("me_rps_ratio", res.values["me_rps"][0] / res.values["baseline_json_rps"][0], "x")


def phase_login_p99(cfg: Config, res: Results, plp: Server, cookie: str) -> None:
    """p99 of /api/users/me while 20 clients log in non-stop, and the login throughput."""
    xsrf = xsrf_token(plp.port)
    login_env = {
        "BENCH_XSRF": xsrf,
        "BENCH_PASSWORD": PASSWORD,
        "BENCH_LOGIN_USERS": str(LOGIN_USERS),
    }
    p99s: list[float] = []
    p50s: list[float] = []
    logins: list[float] = []
    for _ in range(cfg.p99_runs):
        login_proc = start_wrk(
            plp.port, "/api/auth/login", "login.lua", cfg.p99_seconds + 2, LOGIN_USERS, login_env
        )
        time.sleep(1.0)  # the login load is running before latency is measured
        got = wrk(
            plp.port, "/api/users/me", "me.lua", cfg.p99_seconds, 10, {"BENCH_COOKIE": cookie}
        )
        logged = finish_wrk(login_proc)
        if got.bad or logged.bad:
            raise RuntimeError(f"non-2xx under login load: me {got.bad}, login {logged.bad}")
        p99s.append(got.p99_ms)
        p50s.append(got.p50_ms)
        logins.append(logged.rps)
    res.add("me_p50_under_login_ms", median(p50s), "ms")
    res.add("me_p99_under_login_ms", median(p99s), "ms")
    res.add("login_rps", median(logins), "logins/s")


def phase_store(cfg: Config, res: Results) -> list[dict[str, float]]:
    """The session store in-process, at several sizes, 1% of them expired."""
    rows = []
    for size in cfg.store_sizes:
        out = subprocess.run(
            pinned(SERVER_CORE)
            + [sys.executable, str(BENCH / "store_bench.py"), str(size), str(size // 100)],
            check=True,
            capture_output=True,
            text=True,
            cwd=str(ROOT),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        row = json.loads(out.stdout)
        rows.append(row)
        res.add(f"store_{size}_bytes_per_session", row["bytes_per_session"], "B")
        res.add(f"store_{size}_prune_{size // 100}_ms", row["prune_ms"], "ms")
        res.add(f"store_{size}_get_us", row["get_us"], "us")
    return rows


# ----------------------------------------------------------------------------- report


def table(res: Results) -> str:
    def fmt(name: str, digits: int = 0) -> str:
        value = res.get(name)
        if value is None:
            return "n/a"
        return f"{value:,.{digits}f}"

    def ok(flag: bool | None) -> str:
        return "n/a" if flag is None else ("met" if flag else "**not met**")

    def cpu_ratio(base: str, mine: str) -> str:
        a, b = res.get(base), res.get(mine)
        return "n/a" if not a or not b else f"{a / b:.2f}"

    def ratio_ok(name: str, target: float, higher: bool = True) -> bool | None:
        value = res.get(name)
        if value is None:
            return None
        return value >= target if higher else value <= target

    rows = [
        "| figure | plp | same-run baseline | ratio | target | status |",
        "|---|---|---|---|---|---|",
        f"| `GET /api/users/me` with a session, req/s | {fmt('me_rps')} "
        f"| {fmt('baseline_json_rps')} (bare Tornado) | {fmt('me_rps_ratio', 2)} "
        f"| ≥ 0.94 × bare | {ok(ratio_ok('me_rps_ratio', 0.94))} |",
        f"| server CPU per `/api/users/me`, µs (bare ÷ plp = CPU-equivalent ratio) "
        f"| {fmt('me_cpu_us')} | {fmt('baseline_json_cpu_us')} "
        f"| {cpu_ratio('baseline_json_cpu_us', 'me_cpu_us')} | | |",
        f"| its p99 while 20 clients log in non-stop (bcrypt 10), ms "
        f"| {fmt('me_p99_under_login_ms', 1)} | | | ≤ 15 ms "
        f"| {ok(ratio_ok('me_p99_under_login_ms', 15, higher=False))} |",
        f"| its p50 under the same login load, ms | {fmt('me_p50_under_login_ms', 1)} | | | | |",
        f"| login throughput (bcrypt 10), logins/s | {fmt('login_rps', 1)} | | | | |",
        f"| chat fan-out, 1 channel × 200 sockets, deliveries/s (burst) "
        f"| {fmt('fanout_dps')} | {fmt('baseline_fanout_dps')} (naive broadcast) "
        f"| {fmt('fanout_ratio', 2)} | ≥ 3.1 × naive "
        f"| {ok(ratio_ok('fanout_ratio', 3.1))} |",
        f"| server CPU per delivery, µs (naive ÷ plp = CPU-equivalent ratio) "
        f"| {fmt('fanout_cpu_us', 1)} | {fmt('baseline_fanout_cpu_us', 1)} "
        f"| {cpu_ratio('baseline_fanout_cpu_us', 'fanout_cpu_us')} | ≤ 13 µs "
        f"| {ok(ratio_ok('fanout_cpu_us', 13, higher=False))} |",
        f"| chat latency send→delivery at 4,000 deliveries/s, p50 / p99 ms "
        f"| {fmt('paced_p50_ms', 1)} / {fmt('paced_p99_ms', 1)} | | | | |",
        f"| memory per idle authenticated socket (2,000 sockets), KiB "
        f"| {fmt('idle_2000_kib_per_socket', 1)} | | | ≤ 11 KiB "
        f"| {ok(ratio_ok('idle_2000_kib_per_socket', 11, higher=False))} |",
        f"| 10,000 idle sockets held: RSS per socket, KiB "
        f"| {fmt('idle_10000_kib_per_socket', 1)} | | | | |",
        f"| RSS at start, MiB | {fmt('rss_start_mib', 1)} | | | ≤ 40 MiB "
        f"| {ok(ratio_ok('rss_start_mib', 40, higher=False))} |",
        f"| session store: memory per session at 1,000,000, bytes "
        f"| {fmt('store_1000000_bytes_per_session')} | | | | |",
        f"| session store: one prune removing 10,000 expired of 1,000,000, ms "
        f"| {fmt('store_1000000_prune_10000_ms', 1)} | | | | |",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs for development")
    parser.add_argument("--only", default="", help="comma-separated phases (http,p99,store,...)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with server logs")
    args = parser.parse_args(argv)
    cfg = Config(quick=args.quick)
    phases = set(filter(None, args.only.split(","))) or {
        "rss",
        "http",
        "p99",
        "chat",
        "idle",
        "store",
    }
    if not shutil.which("wrk") and phases & {"http", "p99"}:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1
    res = Results()
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="plp-bench-"))
    data_dir = tmp / "data"
    data_dir.mkdir(mode=0o700)
    servers: list[Server] = []
    print(
        f"# plp benchmark{' (quick)' if cfg.quick else ''}: server on core {SERVER_CORE}, "
        f"load on core {LOAD_CORE}; raised limits: "
        + ", ".join(f"--{k} {v}" for k, v in RAISED_LIMITS.items()),
        flush=True,
    )
    try:
        prepare_database(data_dir, 20)
        plp = start_plp(data_dir, tmp)
        servers.append(plp)
        time.sleep(0.5)
        res.add("rss_start_mib", rss_kib(plp.pid) / 1024, "MiB")
        xsrf = xsrf_token(plp.port)
        cookie = login(plp.port, "bench", xsrf)
        if "http" in phases:
            base = start_script("baseline_json", tmp)
            servers.append(base)
            phase_http(cfg, res, plp, base, {plp.port: cookie})
            base.stop()
        if "p99" in phases:
            phase_login_p99(cfg, res, plp, cookie)
        if "chat" in phases or "idle" in phases:
            chat_phases.run(cfg, res, data_dir, tmp, phases)
        if "store" in phases:
            phase_store(cfg, res)
    finally:
        for server in servers:
            server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"# logs kept in {tmp}")
    elapsed = time.monotonic() - started
    print(f"# finished in {elapsed:.0f} s")
    for note in res.notes:
        print(f"# {note}")
    print()
    print(table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
