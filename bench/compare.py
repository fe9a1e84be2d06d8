"""Before/after in one invocation: several plp checkouts alternated under the same load.

`python bench/compare.py [--quick] NAME=DIR ...` (each DIR holds `run.py`, `plp/`,
`templates/`, `static/`, e.g. from `git archive COMMIT plp run.py templates static`).
For each round, every checkout in turn: `/api/users/me` and `/healthz` (wrk, 32
connections: req/s and server CPU µs per request), 1,000 WebSocket connects (server CPU µs
per connect) and, on a fresh server, RSS per idle authenticated socket (2,000 sockets).
Prints the medians per checkout and each one ÷ the first. Like bench/run.py: servers on
core 0, load on core 1, 127.0.0.1 only, every load bounded.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import chat_phases, http_phases  # noqa: E402
from bench.common import Config, Target, login, start_plp, xsrf_token  # noqa: E402
from bench.run import prepare_database  # noqa: E402

FIGURES = ("me_rps", "me_cpu_us", "health_rps", "health_cpu_us", "connect_cpu_us", "idle_kib")


def one_round(cfg: Config, root: Path, data_dir: Path, tmp: Path) -> dict[str, float]:
    """Every figure once for the checkout at `root`."""
    got: dict[str, float] = {}
    server = start_plp(data_dir, tmp, root=root)
    try:
        plp = Target("plp", server, cookie=login(server.port, "bench", xsrf_token(server.port)))
        for figure, path in (("me", "/api/users/me"), ("health", "/healthz")):
            http_phases.measure(plp, path, 1, cfg.http_connections)  # warm-up
            rps, _, cpu = http_phases.measure(plp, path, cfg.http_seconds, cfg.http_connections)
            got[f"{figure}_rps"], got[f"{figure}_cpu_us"] = rps, cpu
        cookies = chat_phases.socket_cookies(server.port)
        _, got["connect_cpu_us"] = chat_phases.connects(
            server.port, server.pid, cookies, cfg.connect_sockets, "plp"
        )
    finally:
        server.stop()
    server = start_plp(data_dir, tmp, root=root)
    try:
        cookies = chat_phases.socket_cookies(server.port)
        got["idle_kib"] = chat_phases.idle(server.port, server.pid, cookies, 2000)
    finally:
        server.stop()
    return got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("checkouts", nargs="+", help="NAME=DIR")
    args = parser.parse_args(argv)
    cfg = Config(quick=args.quick)
    named = [item.split("=", 1) for item in args.checkouts]
    tmp = Path(tempfile.mkdtemp(prefix="plp-compare-"))
    data_dir = tmp / "data"
    data_dir.mkdir(mode=0o700)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in named}
    try:
        prepare_database(data_dir, chat_phases.SOCKET_USERS)
        for i in range(args.rounds):
            for name, root in named:
                runs[name].append(one_round(cfg, Path(root), data_dir, tmp))
                print(f"# round {i + 1} {name}: {runs[name][-1]}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    first = named[0][0]
    medians = {n: {f: statistics.median(r[f] for r in runs[n]) for f in FIGURES} for n in runs}
    print("| checkout | " + " | ".join(FIGURES) + " |")
    print("|---" * (len(FIGURES) + 1) + "|")
    for name, values in medians.items():
        cells = [
            f"{values[f]:,.1f} ({values[f] / medians[first][f]:.2f})" if medians[first][f] else "-"
            for f in FIGURES
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
