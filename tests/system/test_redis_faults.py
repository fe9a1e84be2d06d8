"""Redis outages: 503 while it is down, recovery without restarting plp, refusal to start.

Each test runs its own redis-server on a free port (not the shared test one), so stopping it
disturbs nothing else. The two plp processes share one SQLite file: the faults here are
Redis's, and SQLite is enough to share users between processes on one host.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import LIVE_SECRET, ROOT, LiveServer, backends, body, free_port, wait_until
from tests.support.multiproc import (
    client_for,
    general_channel,
    join,
    open_socket,
    read_until,
    wait_closed,
)

pytestmark = pytest.mark.services

RECOVERY_WAIT = 20.0  # generous: only how long we are willing to poll, not an assertion


@pytest.fixture
def private_redis(tmp_path):
    if shutil.which("redis-server") is None:
        backends.missing("redis-server is not installed")
    server = backends.RedisProcess(tmp_path / "redis").start()
    yield server
    server.stop()


def _env(redis_url: str, db_path: Path) -> dict[str, str]:
    return {
        "PLP_DB": str(db_path),
        "PLP_SESSION_BACKEND": "redis",
        "PLP_REDIS_URL": redis_url,
    }


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

        await wait_until(
            signed_in, RECOVERY_WAIT, "sessions readable again through both processes", 0.1
        )

        async def resubscribed() -> bool:
            return all(
                private_redis.subscribers(f"plp:db0:{name}") == 2
                for name in ("session-end", "chat")
            )

        await wait_until(resubscribed, RECOVERY_WAIT, "both processes subscribed again", 0.1)
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


@pytest.mark.gen_test(timeout=90)
async def test_a_redis_that_cannot_store_gives_503_not_500(private_redis, tmp_path):
    # Redis answers but refuses writes (here out of memory under `noeviction`; MISCONF and a
    # read-only replica are the same to plp): a request that must write answers 503.
    import redis

    env = _env(private_redis.url, tmp_path / "shared.sqlite3")
    server = LiveServer(tmp_path / "a", env=env).start()
    admin = redis.Redis.from_url(private_redis.url)
    try:
        alice = client_for(server)
        assert (await alice.register("alice")).code == 201
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)
        refused = await client_for(server).login("alice")
        assert refused.code == 503, refused.body
        assert body(refused)["error"] == "unavailable"
        assert int(refused.headers["Retry-After"]) >= 1
        admin.config_set("maxmemory", 0)
        assert (await client_for(server).login("alice")).code == 200
    finally:
        admin.close()
        server.stop()
