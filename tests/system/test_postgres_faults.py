"""PostgreSQL restarting under a running plp: 503 during the outage, then back, data intact.

The test runs its own PostgreSQL cluster on a free port (initdb takes a second or two), so
stopping it disturbs no other test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support import LiveServer, backends, body, free_port, wait_until
from tests.support.multiproc import client_for

pytestmark = pytest.mark.services

PG_BIN = Path("/usr/lib/postgresql/15/bin")
RECOVERY_WAIT = 30.0  # how long we are willing to poll, not an assertion


class PostgresProcess:
    """A private PostgreSQL cluster that can be stopped and started again."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: that is private to root and initdb refuses to run as root.
        self.root = Path(tempfile.mkdtemp(prefix="plp-pgfault-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.port = free_port()

    def _as_postgres(self, *args: str) -> None:
        command = [str(a) for a in args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def init(self) -> PostgresProcess:
        self.data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres")
        self.data.chmod(0o700)
        self._as_postgres(PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust")
        return self.start()

    def start(self) -> PostgresProcess:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.data} -c fsync=off"
        )
        self._as_postgres(
            PG_BIN / "pg_ctl",
            "-D",
            self.data,
            "-l",
            self.data / "log",
            "-w",
            "-o",
            options,
            "start",
        )
        return self

    def stop(self) -> None:
        self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres():
    if not (PG_BIN / "initdb").exists():
        backends.missing(f"PostgreSQL 15 is not installed in {PG_BIN}")
    server = PostgresProcess()
    try:
        server.init()
    except (subprocess.CalledProcessError, OSError) as exc:
        server.destroy()
        backends.missing(f"cannot start a private PostgreSQL cluster: {exc}")
    yield server
    server.destroy()


@pytest.mark.gen_test(timeout=120)
async def test_postgres_restart_gives_503_then_recovers(private_postgres, tmp_path):
    url, _ = backends.fresh_postgres_database(private_postgres.url())
    server = LiveServer(tmp_path / "plp", env={"PLP_DB": url}).start()
    try:
        alice = client_for(server)
        assert (await alice.register("alice")).code == 201
        assert (await alice.fetch("/api/users/me")).code == 200

        await asyncio.to_thread(private_postgres.stop)
        response = await alice.fetch("/api/users/me")
        assert response.code == 503, response.body
        assert body(response) == {
            "error": "unavailable",
            "message": "The database is unavailable; try again shortly.",
        }
        assert int(response.headers["Retry-After"]) >= 1
        response = await client_for(server).register("bob")
        assert response.code == 503, response.body

        await asyncio.to_thread(private_postgres.start)

        async def recovered() -> bool:
            return (await alice.fetch("/api/users/me")).code == 200

        await wait_until(recovered, RECOVERY_WAIT, "plp to recover after PostgreSQL came back", 0.2)
        # Writes work again; nothing was lost or half-written during the outage.
        bob = client_for(server)
        assert (await bob.register("bob")).code == 201
        assert body(await bob.fetch("/api/users/me"))["user"]["username"] == "bob"
        channels = body(await alice.fetch("/api/channels"))["channels"]
        assert [c["name"] for c in channels] == ["general"]
    finally:
        server.stop()
