"""Redis outages: 503 while it is down, recovery without restarting plp, refusal to start.

Each test runs its own redis-server on a free port (not the shared test one), so stopping it
disturbs nothing else. The two plp processes share one SQLite file: the faults here are
Redis's, and SQLite is enough to share users between processes on one host.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_sync

from tests import backends
from tests.conftest import body
from tests.multiproc import (
    client_for,
    general_channel,
    join,
    open_socket,
    read_until,
    wait_closed,
)
from tests.support import LIVE_SECRET, ROOT, LiveServer, free_port

pytestmark = pytest.mark.services

RECOVERY_WAIT = 20.0  # generous: only how long we are willing to poll, not an assertion


class RedisProcess:
    """A private redis-server that can be stopped and started again with its data."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        # No automatic snapshots; stop() saves explicitly so sessions survive the restart.
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis_sync.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return self
                except redis_sync.exceptions.ConnectionError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise RuntimeError("private redis-server did not start") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        client = redis_sync.Redis(port=self.port)
        try:
            client.save()  # synchronous snapshot: the restarted server loads it
        finally:
            client.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def subscribers(self, channel: str) -> int:
        client = redis_sync.Redis(port=self.port, decode_responses=True)
        try:
            return dict(client.pubsub_numsub(channel)).get(channel, 0)
        finally:
            client.close()


@pytest.fixture
def private_redis(tmp_path):
    if shutil.which("redis-server") is None:
        backends.missing("redis-server is not installed")
    server = RedisProcess(tmp_path / "redis").start()
    yield server
    server.stop()


def _env(redis_url: str, db_path: Path) -> dict[str, str]:
    return {
        "PLP_DB": str(db_path),
        "PLP_SESSION_BACKEND": "redis",
        "PLP_REDIS_URL": redis_url,
    }


async def _poll(check, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RECOVERY_WAIT
    while not await check():
        assert loop.time() < deadline, f"gave up waiting: {what}"
        await asyncio.sleep(0.1)


@pytest.mark.gen_test(timeout=90)
async def test_redis_outage_gives_503_then_recovers(private_redis, tmp_path):
    env = _env(private_redis.url, tmp_path / "shared.sqlite3")
    a = LiveServer(tmp_path / "a", env=env).start()
    b = LiveServer(tmp_path / "b", env=env).start()
    sockets: list = []
    try:
        alice = client_for(a)
        assert (await alice.register("alice")).code == 201
        bob_on_b = client_for(b)
        assert (await bob_on_b.register("bob")).code == 201
        alice_on_b = client_for(b, alice.cookies)
        general = await general_channel(alice)
        ws_a = await open_socket(a, alice)
        sockets.append(ws_a)
        ws_b = await open_socket(b, bob_on_b)
        sockets.append(ws_b)
        watched = await open_socket(b, alice_on_b)
        sockets.append(watched)
        await join(ws_a, general)
        await join(ws_b, general)

        private_redis.stop()
        for client in (alice, alice_on_b):
            response = await client.fetch("/api/users/me")
            assert response.code == 503, response.body
            assert body(response) == {
                "error": "unavailable",
                "message": "Sessions are unavailable; try again shortly.",
            }
            assert int(response.headers["Retry-After"]) >= 1
        # Logging in needs the throttle and the store: a clear 503 too, never a 500.
        response = await client_for(a).login("alice")
        assert response.code == 503, response.body
        assert body(response)["error"] == "unavailable"
        # Pages needing a session answer 503 as a page; health needs no Redis.
        assert (await alice.fetch("/dashboard")).code == 503
        assert (await client_for(a).fetch("/healthz")).code == 200

        private_redis.start()

        async def signed_in() -> bool:
            return all([(await c.fetch("/api/users/me")).code == 200 for c in (alice, alice_on_b)])

        await _poll(signed_in, "sessions readable again through both processes")

        async def resubscribed() -> bool:
            return all(
                private_redis.subscribers(f"plp:db0:{name}") == 2
                for name in ("session-end", "chat")
            )

        await _poll(resubscribed, "both processes subscribed again")
        # Chat fan-out through Redis works again, on sockets opened before the outage.
        ws_a.write_message(json.dumps({"type": "send", "channel": general, "text": "back"}))
        assert (await read_until(ws_b, "message"))["message"]["text"] == "back"
        # And session-end notices: logging out on A closes alice's socket on B.
        assert (await alice.fetch("/api/auth/logout", "POST")).code == 200
        assert await wait_closed(watched, 5.0) == 4001
    finally:
        for ws in sockets:
            ws.close()
        a.stop()
        b.stop()


def test_redis_down_at_start_exits_2_with_one_line(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PLP_")}
    env.update(
        _env(f"redis://127.0.0.1:{free_port()}/0", tmp_path / "db.sqlite3"),
        SESSION_SECRET=LIVE_SECRET,
        PLP_DATA_DIR=str(tmp_path),
        PLP_PORT=str(free_port()),
    )
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "cannot reach Redis at 127.0.0.1:" in lines[0]
    assert "Traceback" not in done.stderr
