"""Where plp's time goes on one route: `python bench/profile.py [PATH] [--seconds N]`.

Starts plp as `bench/run.py` does (production mode, pinned to the server core), signs the
bench user in, puts wrk's load on PATH (default `/api/users/me`) and samples the server with
py-spy for N seconds. Prints the server CPU per request and the functions with the largest
inclusive and own shares of the samples. Needs `py-spy` and `wrk` (not run in CI).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import http_phases  # noqa: E402
from bench.common import (  # noqa: E402
    LOAD_CORE,
    LOGIN_USERS,
    PASSWORD,
    Target,
    cpu_seconds,
    login,
    pinned,
    start_plp,
    xsrf_token,
)
from bench.run import prepare_database  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default="/api/users/me")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--logins", type=int, default=0, help="clients logging in non-stop meanwhile (the storm)"
    )
    return parser.parse_args()


def shares(collapsed: Path) -> tuple[collections.Counter, collections.Counter, int]:
    """Inclusive and own sample counts per function from py-spy's collapsed stacks."""
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return inclusive, own, total


def main() -> int:
    args = parse_args()
    for tool in ("py-spy", "wrk"):
        if shutil.which(tool) is None:
            print(f"bench/profile.py needs {tool} on PATH", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="plp-profile-"))
    data_dir = tmp / "data"
    data_dir.mkdir(mode=0o700)
    prepare_database(data_dir, LOGIN_USERS)
    server = start_plp(data_dir, tmp)
    try:
        target = Target("plp", server)
        target.cookie = login(target.port, "bench", xsrf_token(target.port))
        http_phases.measure(target, args.path, 2, args.connections)  # warm-up
        collapsed = tmp / "profile.txt"
        storm = None
        if args.logins:
            xsrf = xsrf_token(target.port)
            storm = http_phases.start_wrk(
                target.port,
                "/api/auth/login",
                "login.lua",
                args.seconds + 4,
                args.logins,
                {
                    "BENCH_XSRF": xsrf,
                    "BENCH_PASSWORD": PASSWORD,
                    "BENCH_LOGIN_USERS": str(LOGIN_USERS),
                },
            )
        load = http_phases.start_wrk(
            target.port,
            args.path,
            "me.lua",
            args.seconds + 2,
            args.connections,
            {"BENCH_COOKIE": target.cookie},
        )
        time.sleep(1.0)
        cpu = cpu_seconds(target.pid)
        subprocess.run(
            pinned(LOAD_CORE)
            + ["py-spy", "record", "-r", "250", "-d", str(args.seconds)]
            + ["-f", "raw", "-o", str(collapsed), "-p", str(target.pid)],
            check=True,
            capture_output=True,
        )
        cpu = cpu_seconds(target.pid) - cpu
        got = http_phases.finish_wrk(load)
        if storm is not None:
            logged = http_phases.finish_wrk(storm)
            print(
                f"# {logged.rps:.1f} logins/s meanwhile; {args.path} p50 {got.p50_ms:.1f} ms,"
                f" p99 {got.p99_ms:.1f} ms"
            )
        print(
            f"# {args.path}: {got.rps:,.0f} req/s, about {cpu / got.rps / args.seconds * 1e6:.0f}"
            " µs of server CPU per request (py-spy running)"
        )
        inclusive, own, total = shares(collapsed)
        print(f"# {total} samples; inclusive share, then own share")
        for frame, n in inclusive.most_common(args.top):
            print(f"{100 * n / total:5.1f} %  {frame}")
        print()
        for frame, n in own.most_common(args.top):
            print(f"{100 * n / total:5.1f} %  {frame}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
