"""`create-user --reset` (SPEC §13) against a running server: the new password works, the old
sessions and their open chat socket end, with the memory and with the Redis session backend."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from tests.support import PASSWORD, ROOT, Client, body
from tests.support import backends as services
from tests.support.ws import Peer

NEW_PASSWORD = "a brand new passphrase"
RUN = [sys.executable, str(ROOT / "run.py")]


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment minus any plp setting or secret, plus the server's data dir."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PLP_", "SESSION_SECRET")) and k != "PYTHONPATH"
    }
    env.update({"PLP_DATA_DIR": str(data_dir), "PLP_BCRYPT_ROUNDS": "4"})
    env.update(extra)
    return env


def cli(data_dir: Path, *args: str, password: str | None = PASSWORD, **extra: str):
    env = cli_env(data_dir, **extra)
    if password is not None:
        env["PLP_PASSWORD"] = password
    return subprocess.run(
        [*RUN, "create-user", *args],
        cwd=str(ROOT),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


def audit_rows(data_dir: Path, event: str) -> list[tuple]:
    with sqlite3.connect(data_dir / "plp.sqlite3") as conn:
        return conn.execute(
            "SELECT username, detail FROM audit WHERE event = ?", (event,)
        ).fetchall()


@pytest.fixture(params=["memory", "redis"])
def backend_env(request) -> dict[str, str]:
    if request.param == "memory":
        return {}
    return {"PLP_SESSION_BACKEND": "redis", "PLP_REDIS_URL": services.redis_url()}


@pytest.mark.gen_test(timeout=90)
async def test_reset_from_the_command_line_ends_sessions_in_a_running_server(
    live_server, backend_env
):
    server = live_server(env=backend_env)
    made = await asyncio.to_thread(
        cli, server.data_dir, "--username", "kid", "--role", "student", **backend_env
    )
    assert made.returncode == 0, made.stderr
    http = AsyncHTTPClient()
    old = Client(http, server.url)
    assert (await old.login("kid")).code == 200
    cookie = old.cookie_header()
    conn = await websocket_connect(
        HTTPRequest(server.ws_url + "/ws/chat", headers={"Cookie": cookie})
    )
    peer = Peer(conn, None, cookie)
    try:
        await peer.expect("hello")
        await peer.join(1)

        done = await asyncio.to_thread(
            cli,
            server.data_dir,
            "--reset",
            "--username",
            "KID",
            password=NEW_PASSWORD,
            **backend_env,
        )
        assert done.returncode == 0, done.stderr
        assert "kid" in done.stdout and NEW_PASSWORD not in done.stdout + done.stderr

        # The idle socket is closed by the server (Redis end notice, or the cut-off watch
        # within about a second); the HTTP session is refused at its next request.
        assert await peer.closed() == 4001
    finally:
        conn.close()
    assert (await old.fetch("/api/users/me")).code == 401
    assert (await Client(http, server.url).login("kid", PASSWORD)).code == 401
    fresh = Client(http, server.url)
    assert (await fresh.login("kid", NEW_PASSWORD)).code == 200
    assert body(await fresh.fetch("/api/users/me"))["user"]["username"] == "kid"
    rows = audit_rows(server.data_dir, "password_reset")
    assert len(rows) == 1 and rows[0][0] == "kid"
    assert json.loads(rows[0][1])["by"] == "create-user"
    assert server.proc is not None and server.proc.poll() is None


@pytest.mark.gen_test(timeout=60)
async def test_new_session_after_the_reset_is_not_cut_off(live_server):
    server = live_server()
    assert (
        await asyncio.to_thread(cli, server.data_dir, "--username", "kid", "--role", "student")
    ).returncode == 0
    done = await asyncio.to_thread(
        cli, server.data_dir, "--reset", "--username", "kid", password=NEW_PASSWORD
    )
    assert done.returncode == 0, done.stderr
    client = Client(AsyncHTTPClient(), server.url)
    assert (await client.login("kid", NEW_PASSWORD)).code == 200
    await asyncio.sleep(1.5)  # past one cut-off poll: a session begun after the reset stays
    assert (await client.fetch("/api/users/me")).code == 200


def test_reset_refusals(tmp_path):
    data = tmp_path / "data"
    assert cli(data, "--username", "kid", "--role", "student").returncode == 0
    unknown = cli(data, "--reset", "--username", "nobody", password=NEW_PASSWORD)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "plp: error: there is no user 'nobody'"
    for args, fragment in (
        (["--reset", "--username", "kid", "--role", "student"], "--role"),
        (["--reset", "--username", "kid", "--display-name", "K"], "--display-name"),
        (["--reset"], "--username"),
        (["--reset", "--username", "kid", "--bogus"], "--bogus"),
    ):
        result = cli(data, *args, password=NEW_PASSWORD)
        assert result.returncode == 2, (args, result.stderr)
        assert fragment in result.stderr and "Traceback" not in result.stderr, result.stderr
    for weak, fragment in (("short", "at least 8"), ("password123", "too common"), ("kid", "8")):
        result = cli(data, "--reset", "--username", "kid", password=weak)
        assert result.returncode == 2 and fragment in result.stderr, result.stderr
    no_password = cli(data, "--reset", "--username", "kid", password=None)
    assert no_password.returncode == 2 and "PLP_PASSWORD" in no_password.stderr
    assert audit_rows(data, "password_reset") == []
    # Without --reset, --role is still required.
    result = cli(data, "--username", "kid2")
    assert result.returncode == 2 and "create-user needs --role" in result.stderr
