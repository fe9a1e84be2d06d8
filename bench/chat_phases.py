"""Chat figures for bench/run.py: fan-out, send→delivery latency, idle sockets, connects,
for plp and (same load, alternated) the Express peer.

Load comes from `bench/wsload.py` worker processes pinned to the load core; this module
starts them, sends their commands and reads their JSON answers.
"""

from __future__ import annotations

import json
import math
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import express_peer
from bench.common import (
    BENCH,
    LOAD_CORE,
    ROOT,
    Config,
    Results,
    Target,
    cpu_seconds,
    login,
    pinned,
    rss_kib,
    start_plp,
    start_script,
    xsrf_token,
)

GENERAL = 1  # the `general` channel every plp database starts with
SOCKET_USERS = 20


class Worker:
    """One wsload.py process."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            pinned(LOAD_CORE) + [sys.executable, str(BENCH / "wsload.py"), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(ROOT),
        )
        self.sockets = int(config["sockets"])
        self.opening = 0.0  # seconds the worker took to open its sockets

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def read(self, timeout: float = 120.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError("load worker did not answer in time")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"load worker exited ({self.proc.wait()})")
        return json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(cmd="quit")
                self.proc.wait(20)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def start_workers(
    port: int,
    cookies: list[str],
    sockets: int,
    channel: int | None,
    per_worker: int = 2500,
    timing: bool = False,
    proto: str = "plp",
) -> list[Worker]:
    """Workers holding `sockets` connections in all, each ready (hello, joined)."""
    count = max(1, math.ceil(sockets / per_worker))
    workers = []
    left = sockets
    for i in range(count):
        share = left // (count - i)
        left -= share
        config = {
            "port": port,
            "cookies": cookies,
            "sockets": share,
            "channel": channel,
            "timing": timing,
            "proto": proto,
        }
        workers.append(Worker(config))
    for worker in workers:
        got = worker.read()
        if got.get("ready") != worker.sockets:
            raise RuntimeError(f"worker not ready: {got}")
        worker.opening = float(got.get("seconds", 0.0))
    return workers


def stop_all(workers: list[Worker]) -> None:
    for worker in workers:
        worker.stop()


def fanout(
    port: int, pid: int, cookies: list[str], subscribers: int, messages: int, proto: str = "plp"
) -> tuple[float, float]:
    """(deliveries/s, server CPU µs per delivery) for one burst into one channel."""
    sender = start_workers(port, cookies, 1, GENERAL, proto=proto)[0]
    receivers = start_workers(port, cookies, subscribers - 1, GENERAL, proto=proto)
    workers = [sender, *receivers]
    try:
        time.sleep(0.3)  # presence frames from the joins settle
        for worker in workers:
            worker.send(cmd="expect", count=messages * worker.sockets, timeout=60)
            assert worker.read().get("armed")
        cpu_before = cpu_seconds(pid)
        sender.send(cmd="burst", count=messages)
        sent_at = sender.read()["sent_at"]
        results = [worker.read(90) for worker in workers]
        cpu_after = cpu_seconds(pid)
    finally:
        stop_all(workers)
    delivered = sum(r["received"] for r in results)
    expected = messages * subscribers
    if delivered < expected:
        raise RuntimeError(f"fan-out delivered {delivered} of {expected}")
    elapsed = max(r["last"] for r in results) - sent_at
    return delivered / elapsed, (cpu_after - cpu_before) / delivered * 1e6


def paced(
    port: int, cookies: list[str], subscribers: int, rate: int, seconds: float
) -> list[float]:
    """Send→delivery latencies (ms) at `rate` deliveries/s into one channel."""
    sender = start_workers(port, cookies, 1, GENERAL, timing=True)[0]
    receivers = start_workers(port, cookies, subscribers - 1, GENERAL, timing=True)
    workers = [sender, *receivers]
    try:
        time.sleep(0.3)
        sender.send(cmd="paced", rate=rate / subscribers, seconds=seconds)
        sender.read(seconds + 60)
        time.sleep(0.5)  # the last deliveries arrive
        latencies: list[float] = []
        for worker in workers:
            worker.send(cmd="latencies")
            latencies.extend(worker.read()["latencies"])
    finally:
        stop_all(workers)
    return latencies


def idle(port: int, pid: int, cookies: list[str], sockets: int, proto: str = "plp") -> float:
    """Server RSS growth per authenticated idle socket (hello received, no channel), KiB."""
    time.sleep(0.5)
    before = rss_kib(pid)
    workers = start_workers(port, cookies, sockets, None, proto=proto)
    try:
        time.sleep(1.0)
        after = rss_kib(pid)
    finally:
        stop_all(workers)
    return (after - before) / sockets


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def connects(
    port: int, pid: int, cookies: list[str], sockets: int, proto: str
) -> tuple[float, float]:
    """(WebSocket connects/s, server CPU µs per connect): open `sockets` authenticated
    sockets 50 at a time (TCP, cookie check, handshake, greeting), then close them."""
    cpu = cpu_seconds(pid)
    worker = start_workers(port, cookies, sockets, None, per_worker=sockets, proto=proto)[0]
    spent = cpu_seconds(pid) - cpu
    stop_all([worker])
    return sockets / worker.opening, spent / sockets * 1e6


def socket_cookies(port: int) -> list[str]:
    xsrf = xsrf_token(port)
    return [login(port, f"sock{i}", xsrf) for i in range(SOCKET_USERS)]


def plp_target(data_dir: Path, tmp: Path) -> tuple[Target, list[str]]:
    server = start_plp(data_dir, tmp)
    return Target("plp", server), socket_cookies(server.port)


def express_target(peer: Path, tmp: Path) -> tuple[Target, list[str]]:
    server = express_peer.start(peer, tmp)
    cookies = [express_peer.register(server.port, f"sock{i}") for i in range(SOCKET_USERS)]
    return Target("express", server, proto="express"), cookies


def run(
    cfg: Config, res: Results, data_dir: Path, tmp: Path, phases: set[str], peer: Path | None
) -> None:
    """The chat phases, each against fresh servers where memory matters; the Express peer
    (when `peer` is ready) alternated with plp under the same load."""
    makers: list[Callable[[], tuple[Target, list[str]]]] = [lambda: plp_target(data_dir, tmp)]
    if peer is not None:
        makers.append(lambda: express_target(peer, tmp))
    if "idle" in phases:
        for size in cfg.idle_sockets:
            for make in makers:
                target, cookies = make()
                try:
                    got = idle(target.port, target.pid, cookies, size, target.proto)
                    res.add(f"{target.name}_idle_{size}_kib_per_socket", got, "KiB")
                finally:
                    target.server.stop()
    if "connect" in phases:
        run_connects(cfg, res, tmp, makers)
    if "chat" in phases:
        run_fanout(cfg, res, tmp, makers)


def run_connects(
    cfg: Config, res: Results, tmp: Path, makers: list[Callable[[], tuple[Target, list[str]]]]
) -> None:
    """Connects on plp, Express and the bare Tornado chat socket (no session, no headers),
    alternated: the last shows what Tornado's own handshake costs."""
    made = [make() for make in makers]
    base = start_script("baseline_broadcast", tmp)
    made.append((Target("baseline", base, proto="plp"), ["x=y"]))
    try:
        runs: dict[str, list[tuple[float, float]]] = {t.name: [] for t, _ in made}
        for target, cookies in made:  # warm-up
            connects(target.port, target.pid, cookies, 100, target.proto)
        for _ in range(cfg.connect_runs):
            for target, cookies in made:
                got = connects(target.port, target.pid, cookies, cfg.connect_sockets, target.proto)
                runs[target.name].append(got)
        for name, got in runs.items():
            res.add(f"{name}_connects_per_s", statistics.median(r[0] for r in got), "connects/s")
            res.add(f"{name}_connect_cpu_us", statistics.median(r[1] for r in got), "us")
    finally:
        for target, _ in made:
            target.server.stop()


def run_fanout(
    cfg: Config, res: Results, tmp: Path, makers: list[Callable[[], tuple[Target, list[str]]]]
) -> None:
    made = [make() for make in makers]
    base = start_script("baseline_broadcast", tmp)
    made.append((Target("baseline", base, proto="plp"), ["x=y"]))
    try:
        size = cfg.fanout_subscribers
        for target, cookies in made:  # warm-up bursts
            fanout(target.port, target.pid, cookies, size, 50, target.proto)
        runs: dict[str, list[tuple[float, float]]] = {t.name: [] for t, _ in made}
        for _ in range(cfg.fanout_runs):
            for target, cookies in made:
                got = fanout(
                    target.port, target.pid, cookies, size, cfg.fanout_messages, target.proto
                )
                runs[target.name].append(got)
        for name, got in runs.items():
            prefix = "" if name == "plp" else f"{name}_"
            res.add(f"{prefix}fanout_dps", statistics.median(r[0] for r in got), "deliveries/s")
            res.add(f"{prefix}fanout_cpu_us", statistics.median(r[1] for r in got), "us")
        plp, cookies = made[0]
        latencies = paced(plp.port, cookies, size, cfg.paced_rate, cfg.paced_seconds)
        res.add("paced_p50_ms", percentile(latencies, 0.50), "ms")
        res.add("paced_p99_ms", percentile(latencies, 0.99), "ms")
        res.add("paced_deliveries", float(len(latencies)), "deliveries")
        for channel in cfg.channel_sizes:
            messages = max(20, 100_000 // channel // (3 if cfg.quick else 1))
            got = fanout(plp.port, plp.pid, cookies, channel, messages)
            res.add(f"fanout_{channel}_dps", got[0], "deliveries/s")
            res.add(f"fanout_{channel}_cpu_us", got[1], "us")
    finally:
        for target, _ in made:
            target.server.stop()
