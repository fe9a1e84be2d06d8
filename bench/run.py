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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as `python bench/run.py`: `bench` and `plp` are imported from this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import chat_phases, express_peer, http_phases  # noqa: E402
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
    Target,
    login,
    pinned,
    rss_kib,
    start_plp,
    start_script,
    xsrf_token,
)

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
    """The issue's table: plp beside the Express peer, plp ÷ Express, target, status."""
    rows = [
        "| figure (medians, same invocation) | plp | Express | plp ÷ Express | target | status |",
        "|---|---|---|---|---|---|",
    ]
    for label, mine, peer, digits, target in FIGURES:
        a, b = res.get(mine), res.get(peer) if peer else None
        ratio = a / b if a is not None and b else None
        met = target(a, b, ratio) if a is not None else None
        status = "" if met is None else ("met" if met else "**not met**")
        rows.append(
            f"| {label} | {_fmt(a, digits)} | {_fmt(b, digits)} | {_fmt(ratio, 2)} "
            f"| {TARGETS.get(mine, '')} | {status} |"
        )
    rows += [
        "",
        "| figure | plp | bare Tornado (same run) | plp ÷ bare |",
        "|---|---|---|---|",
    ]
    for label, mine, base, digits in BASELINE_FIGURES:
        a, b = res.get(mine), res.get(base)
        ratio = a / b if a is not None and b else None
        rows.append(f"| {label} | {_fmt(a, digits)} | {_fmt(b, digits)} | {_fmt(ratio, 2)} |")
    return "\n".join(rows)


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _none(*_: object) -> bool | None:
    return None


def _at_least(x: float):
    return lambda a, b, ratio: None if ratio is None else ratio >= x


def _at_most(x: float):
    return lambda a, b, ratio: None if ratio is None else ratio <= x


def _below(x: float):
    return lambda a, b, ratio: a <= x


# (label, plp figure, Express figure, digits, target check(plp, express, ratio))
FIGURES = [
    (
        "`GET /api/users/me` with a session, req/s",
        "plp_me_rps",
        "express_me_rps",
        0,
        _at_least(1.0),
    ),
    ("the same, p99 at 32 connections, ms", "plp_me_p99_ms", "express_me_p99_ms", 1, _at_most(1.0)),
    ("server CPU per `/me`, µs", "plp_me_cpu_us", "express_me_cpu_us", 0, _none),
    (
        "`GET /healthz` vs Express `GET /hello` (no session), req/s",
        "plp_health_rps",
        "express_health_rps",
        0,
        _at_least(1.0),
    ),
    (
        "`/me` p99 while 20 clients log in non-stop, ms",
        "plp_me_p99_under_login_ms",
        "express_me_p99_under_login_ms",
        1,
        _below(15),
    ),
    ("logins/s under that load", "plp_login_rps", "express_login_rps", 1, _none),
    ("chat fan-out to 200 sockets, deliveries/s", "fanout_dps", "express_fanout_dps", 0, _none),
    ("server CPU per delivery, µs", "fanout_cpu_us", "express_fanout_cpu_us", 1, _at_most(1 / 1.1)),
    ("RSS at start, MiB", "plp_rss_start_mib", "express_rss_start_mib", 1, _below(40)),
    ("RSS after load, MiB", "plp_rss_after_load_mib", "express_rss_after_load_mib", 1, _none),
    (
        "RSS per idle authenticated socket (2,000 sockets), KiB",
        "plp_idle_2000_kib_per_socket",
        "express_idle_2000_kib_per_socket",
        1,
        _at_most(1.0),
    ),
    (
        "the same with 19,000 sockets, KiB",
        "plp_idle_19000_kib_per_socket",
        "express_idle_19000_kib_per_socket",
        1,
        _none,
    ),
    (
        "WebSocket connects per second (cookie check, handshake, hello)",
        "plp_connects_per_s",
        "express_connects_per_s",
        0,
        _at_least(1.0),
    ),
    ("server CPU per connect, µs", "plp_connect_cpu_us", "express_connect_cpu_us", 0, _none),
    ("`GET /chat` signed in, req/s", "page_chat_rps", "", 0, _none),
    ("`GET /classes` signed in, req/s", "page_classes_rps", "", 0, _none),
    ("a static stylesheet, req/s", "static_css_rps", "", 0, _none),
    ("chat latency at 4,000 deliveries/s, p99 ms", "paced_p99_ms", "", 1, _none),
]
TARGETS = {
    "plp_me_rps": "≥ 1.0 × (stretch 1.25 ×)",
    "plp_me_p99_ms": "≤ Express",
    "plp_health_rps": "≥ 1.0 ×",
    "plp_me_p99_under_login_ms": "≤ 15 ms",
    "fanout_cpu_us": "≥ 1.1 × Express (CPU)",
    "plp_rss_start_mib": "≤ 40 MiB",
    "plp_idle_2000_kib_per_socket": "≤ Express",
    "plp_connects_per_s": "≥ 1.0 ×",
}
BASELINE_FIGURES = [
    ("`GET /api/users/me`, req/s", "plp_me_rps", "baseline_me_rps", 0),
    ("server CPU per `/me`, µs", "plp_me_cpu_us", "baseline_me_cpu_us", 0),
    ("`GET /healthz`, req/s", "plp_health_rps", "baseline_health_rps", 0),
    ("chat fan-out, deliveries/s (naive broadcast)", "fanout_dps", "baseline_fanout_dps", 0),
    ("server CPU per delivery, µs", "fanout_cpu_us", "baseline_fanout_cpu_us", 1),
    ("WebSocket connects per second", "plp_connects_per_s", "baseline_connects_per_s", 0),
    ("server CPU per connect, µs", "plp_connect_cpu_us", "baseline_connect_cpu_us", 0),
]
PHASES = ("rss", "http", "p99", "pages", "chat", "connect", "idle", "store")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs for development")
    parser.add_argument("--only", default="", help="comma-separated phases: " + ",".join(PHASES))
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with server logs")
    parser.add_argument("--no-peer", action="store_true", help="leave the Express peer out")
    args = parser.parse_args(argv)
    cfg = Config(quick=args.quick)
    phases = set(filter(None, args.only.split(","))) or set(PHASES)
    if not shutil.which("wrk") and phases & {"http", "p99", "pages"}:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1
    res = Results()
    peer, why = (None, "--no-peer") if args.no_peer else express_peer.prepare()
    if peer is None:
        print(f"# Express peer skipped: {why}", flush=True)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="plp-bench-"))
    data_dir = tmp / "data"
    data_dir.mkdir(mode=0o700)
    peer_limits = ", ".join(f"{k}={v}" for k, v in express_peer.RAISED.items())
    print(
        f"# plp benchmark{' (quick)' if cfg.quick else ''}: servers on core {SERVER_CORE}, "
        f"load on core {LOAD_CORE}; raised limits: "
        + ", ".join(f"--{k} {v}" for k, v in RAISED_LIMITS.items())
        + (f"; Express peer: {peer_limits}" if peer else ""),
        flush=True,
    )
    try:
        prepare_database(data_dir, chat_phases.SOCKET_USERS)
        run_http_phases(cfg, res, phases, data_dir, tmp, peer)
        if phases & {"chat", "idle", "connect"}:
            chat_phases.run(cfg, res, data_dir, tmp, phases, peer)
        if "store" in phases:
            phase_store(cfg, res)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"# logs kept in {tmp}")
    print(f"# finished in {time.monotonic() - started:.0f} s")
    for note in res.notes:
        print(f"# {note}")
    print()
    print(table(res))
    return 0


def run_http_phases(
    cfg: Config, res: Results, phases: set[str], data_dir: Path, tmp: Path, peer: Path | None
) -> None:
    """RSS at start, the HTTP phases, RSS after them: plp, bare Tornado and Express."""
    servers: list[Server] = []
    try:
        plp_server = start_plp(data_dir, tmp)
        servers.append(plp_server)
        plp = Target("plp", plp_server)
        plp.cookie = login(plp.port, "bench", xsrf_token(plp.port))
        targets = [plp]
        if peer is not None:
            express = Target("express", express_peer.start(peer, tmp), proto="express")
            express.health = "/hello"
            servers.append(express.server)
            targets.append(express)
        time.sleep(0.5)
        for target in targets:
            res.add(f"{target.name}_rss_start_mib", rss_kib(target.pid) / 1024, "MiB")
        if peer is not None:
            express.cookie, _ = express_peer.fill(express.port, LOGIN_USERS, 0)
        if "http" in phases:
            base = Target("baseline", start_script("baseline_json", tmp))
            servers.append(base.server)
            http_phases.phase_http(cfg, res, [plp, base, *targets[1:]])
            base.server.stop()
        if "p99" in phases:
            http_phases.phase_login_p99(cfg, res, targets)
        if phases & {"http", "p99"}:
            for target in targets:
                res.add(f"{target.name}_rss_after_load_mib", rss_kib(target.pid) / 1024, "MiB")
        if "pages" in phases:
            http_phases.phase_pages(cfg, res, plp)
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
