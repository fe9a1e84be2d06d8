"""Chat figures for bench/run.py: fan-out, send→delivery latency, idle sockets.

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
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH,
    LOAD_CORE,
    ROOT,
    Config,
    Results,
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
        }
        workers.append(Worker(config))
    for worker in workers:
        got = worker.read()
        if got.get("ready") != worker.sockets:
            raise RuntimeError(f"worker not ready: {got}")
    return workers


def stop_all(workers: list[Worker]) -> None:
    for worker in workers:
        worker.stop()


def fanout(
    port: int, pid: int, cookies: list[str], subscribers: int, messages: int
) -> tuple[float, float]:
    """(deliveries/s, server CPU µs per delivery) for one burst into one channel."""
    sender = start_workers(port, cookies, 1, GENERAL)[0]
    receivers = start_workers(port, cookies, subscribers - 1, GENERAL)
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


def idle(port: int, pid: int, cookies: list[str], sockets: int) -> float:
    """Server RSS growth per authenticated idle socket (hello received, no channel), KiB."""
    time.sleep(0.5)
    before = rss_kib(pid)
    workers = start_workers(port, cookies, sockets, None)
    try:
        time.sleep(1.0)
        after = rss_kib(pid)
    finally:
        stop_all(workers)
    return (after - before) / sockets


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def socket_cookies(port: int) -> list[str]:
    xsrf = xsrf_token(port)
    return [login(port, f"sock{i}", xsrf) for i in range(SOCKET_USERS)]


def run(cfg: Config, res: Results, data_dir: Path, tmp: Path, phases: set[str]) -> None:
    """The chat phases, each against fresh servers where memory matters."""
    if "idle" in phases:
        for size in cfg.idle_sockets:
            server = start_plp(data_dir, tmp)
            try:
                cookies = socket_cookies(server.port)
                res.add(
                    f"idle_{size}_kib_per_socket",
                    idle(server.port, server.pid, cookies, size),
                    "KiB",
                )
            finally:
                server.stop()
    if "chat" not in phases:
        return
    plp = start_plp(data_dir, tmp)
    base = start_script("baseline_broadcast", tmp)
    try:
        cookies = socket_cookies(plp.port)
        size = cfg.fanout_subscribers
        # Warm-up bursts, then alternate plp and the naive broadcast.
        fanout(plp.port, plp.pid, cookies, size, 50)
        fanout(base.port, base.pid, ["x=y"], size, 50)
        plp_runs, base_runs = [], []
        for _ in range(cfg.fanout_runs):
            plp_runs.append(fanout(plp.port, plp.pid, cookies, size, cfg.fanout_messages))
            base_runs.append(fanout(base.port, base.pid, ["x=y"], size, cfg.fanout_messages))
        dps = statistics.median(r[0] for r in plp_runs)
        base_dps = statistics.median(r[0] for r in base_runs)
        res.add("fanout_dps", dps, "deliveries/s")
        res.add("fanout_cpu_us", statistics.median(r[1] for r in plp_runs), "us")
        res.add("baseline_fanout_dps", base_dps, "deliveries/s")
        res.add("baseline_fanout_cpu_us", statistics.median(r[1] for r in base_runs), "us")
        res.add("fanout_ratio", dps / base_dps, "x")
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
        plp.stop()
        base.stop()
