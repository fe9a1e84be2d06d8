"""Instructions per request, counted by valgrind: `python bench/instructions.py [PATH ...]`.

Wall-clock and CPU-time figures on this shared machine swing by tens of per cent, too much
to tell a 3 % change; the number of instructions the server executes per request does not
move. plp (or `--root DIR` another checkout, or `--baseline [json|broadcast]` a bare
Tornado server from bench/) runs under callgrind with instrumentation off while it starts;
then for each PATH: instrumentation on, `--warm` requests, counters zeroed, `--requests`
sequential keep-alive requests with the bench user's session, counters dumped. PATH `ws`
counts a chat socket instead: handshake, hello, a close from the client. Prints user-space
instructions per request (the kernel's share, such as the cost of a write(2), is not
counted). Needs valgrind.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import wsload  # noqa: E402
from bench.common import (  # noqa: E402
    BENCH,
    Server,
    free_port,
    login,
    plp_command,
    xsrf_token,
)
from bench.run import prepare_database  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=["/api/users/me", "/healthz"])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warm", type=int, default=50)
    parser.add_argument("--root", type=Path, help="another checkout's plp (default: this one)")
    parser.add_argument(
        "--baseline",
        nargs="?",
        const="json",
        choices=("json", "broadcast"),
        help="a bare Tornado server instead: the JSON handler, or the naive chat broadcast",
    )
    return parser.parse_args()


def callgrind(argv: list[str], out: Path) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        *argv,
    ]


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def total(out_dir: Path, before: set[Path]) -> int:
    """The instruction total of the newest dump written since `before`."""
    for _ in range(100):
        new = sorted(set(out_dir.glob("cg.out*")) - before, key=os.path.getmtime)
        if new:
            text = new[-1].read_text(errors="replace")
            found = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
            if found:
                return int(found.group(1))
        time.sleep(0.1)
    raise RuntimeError("callgrind wrote no dump")


def run_connects(port: int, cookie: str, count: int) -> None:
    """Chat sockets one after another: handshake, the server's hello, a close from the client
    (1000) answered by the server's, then the TCP close."""
    for _ in range(count):
        key = base64.b64encode(os.urandom(16)).decode()
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(
                (
                    f"GET /ws/chat HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                    f"Cookie: {cookie}\r\nX-Forwarded-Proto: https\r\n"
                    "X-Forwarded-For: 127.0.0.5\r\nUser-Agent: plp-bench-ws\r\n\r\n"
                ).encode()
            )
            got = b""
            while b"hello" not in got:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError(f"socket closed before hello: {got[:200]!r}")
                got += chunk
            if not got.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"no upgrade: {got[:200]!r}")
            sock.sendall(wsload.mask_frame(struct.pack("!H", 1000), opcode=0x8))
            while sock.recv(65536):
                pass


def run_requests(port: int, path: str, cookie: str, count: int) -> None:
    if path == "ws":
        run_connects(port, cookie, count)
        return
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Cookie": cookie, "X-Forwarded-Proto": "https", "X-Forwarded-For": "127.0.0.2"}
    for _ in range(count):
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}")
    conn.close()


def main() -> int:
    args = parse_args()
    if shutil.which("valgrind") is None:
        print("bench/instructions.py needs valgrind", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="plp-instr-"))
    data_dir = tmp / "data"
    data_dir.mkdir(mode=0o700)
    port = free_port()
    out = tmp / "cg.out"
    if args.baseline:
        argv = [sys.executable, str(BENCH / f"baseline_{args.baseline}.py"), str(port)]
        env = dict(os.environ)
    else:
        prepare_database(data_dir, 0)
        argv, env = plp_command(data_dir, port, args.root)
    server = Server("server", callgrind(argv, out), port, env, tmp / "server.log")
    try:
        server.wait_ready(timeout=300)
        cookie = "" if args.baseline else login(port, "bench", xsrf_token(port))
        pid = server.pid
        control(pid, "-i", "on")
        print(
            f"# {'bare Tornado' if args.baseline else args.root or 'this checkout'}:"
            f" {args.requests} sequential requests per path, after {args.warm}"
        )
        for path in args.paths:
            run_requests(port, path, cookie, args.warm)
            before = set(tmp.glob("cg.out*"))
            control(pid, "-z")
            run_requests(port, path, cookie, args.requests)
            control(pid, "-d")
            count = total(tmp, before)
            print(f"{path}: {count / args.requests:,.0f} instructions per request")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
