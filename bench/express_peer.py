"""The Express original as a same-run peer for bench/run.py (issue 15).

The peer's source is `shared/peers/express/` beside the project checkout (or
`PLP_EXPRESS_PEER`); it is copied into `bench/.express/` (ignored by git) and `npm ci` runs
there once, again only when its `package-lock.json` changes. Without node, npm or the
source the bench says why and leaves the peer's columns empty. The peer listens on 127.0.0.1
only, pinned to the server core like plp.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
from pathlib import Path

from bench.common import (
    BCRYPT_ROUNDS,
    BENCH,
    PASSWORD,
    SECRET,
    Server,
    cookie_value,
    free_port,
    request,
)

CACHE = BENCH / ".express"
FILES = ("server.js", "package.json", "package-lock.json", ".npmrc")
COOKIE = "connect.sid"
# The token bucket is the original's (5 per 5 s per connection); raised for bursts like
# plp's --chat-rate, printed with the results.
RAISED = {"CHAT_RATE_MAX": "1000000", "CHAT_RATE_WINDOW_MS": "1000"}


def source_dir() -> Path | None:
    """Where the peer's source is: $PLP_EXPRESS_PEER, or shared/peers/express near ROOT."""
    given = os.environ.get("PLP_EXPRESS_PEER")
    candidates = [Path(given)] if given else []
    here = BENCH.resolve()
    candidates += [p / "shared" / "peers" / "express" for p in here.parents]
    candidates.append(Path("/work/shared/peers/express"))
    for path in candidates:
        if (path / "server.js").is_file():
            return path
    return None


def prepare() -> tuple[Path | None, str]:
    """(the ready peer directory, "") or (None, why it cannot run)."""
    if not shutil.which("node") or not shutil.which("npm"):
        return None, "node or npm is not installed: Express peer columns skipped"
    src = source_dir()
    if src is None:
        return None, "no shared/peers/express (set PLP_EXPRESS_PEER): Express peer skipped"
    CACHE.mkdir(exist_ok=True)
    lock = CACHE / "package-lock.json"
    fresh = (
        not (CACHE / "node_modules").is_dir()
        or not lock.exists()
        or not filecmp.cmp(src / "package-lock.json", lock, shallow=False)
    )
    for name in FILES:
        if (src / name).exists():
            shutil.copyfile(src / name, CACHE / name)
    if fresh:
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=CACHE,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return None, "npm ci failed for the Express peer: " + " | ".join(tail)
    return CACHE, ""


def start(peer_dir: Path, logs: Path) -> Server:
    """The peer on a free port, pinned to the server core, ready."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "SESSION_SECRET": SECRET,
        "BCRYPT_ROUNDS": str(BCRYPT_ROUNDS),
        "NODE_ENV": "production",
        **RAISED,
    }
    env.pop("LOG_REQUESTS", None)
    server = Server(
        "express", ["node", str(peer_dir / "server.js")], port, env, logs / f"express-{port}.log"
    )
    server.wait_ready("/hello")
    return server


def register(port: int, username: str) -> str:
    """Create an account on the peer; the `Cookie` header value of its session."""
    status, headers, data = request(
        port,
        "POST",
        "/api/auth/register",
        {"username": username, "password": PASSWORD, "name": username},
    )
    if status != 201:
        raise RuntimeError(f"express register {username} answered {status}: {data[:200]!r}")
    return f"{COOKIE}={cookie_value(headers, COOKIE)}"


def fill(port: int, login_users: int, socket_users: int) -> tuple[str, list[str]]:
    """The peer's accounts as plp's: `bench`, login0.., sock0..; (bench cookie, sock cookies)."""
    cookie = register(port, "bench")
    for i in range(login_users):
        register(port, f"login{i}")
    return cookie, [register(port, f"sock{i}") for i in range(socket_users)]
