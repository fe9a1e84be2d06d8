"""Disk faults under a live plp: a full disk and a corrupted SQLite file (SPEC §6, §8, §11).

The full disk is real. Where this machine lets us mount one, it is a 4 MiB tmpfs filled with a
filler file until the kernel answers ENOSPC. Elsewhere (an unprivileged container, and so
possibly CI) it is a file-size limit: the server runs with SIGXFSZ ignored and the test lowers
its RLIMIT_FSIZE with prlimit(2), so every write past the limit fails in the kernel with EFBIG.
Both routes run here when mounting works; when it does not, the "filesystem" cases use the
file-size limit too, so nothing is ever skipped.

Checked: the API answers 503 `unavailable` with Retry-After, a form post a 503 page, a chat
send closes 1013 without an ack, signed-in reads keep working, the log names the cause in one
line and holds no traceback, and once space is back everything acknowledged is intact and the
server works again. A corrupted file stops the start with exit status 2 and one line, and
corruption found while running is a 503.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from tornado.websocket import WebSocketClientConnection

from plp.storage.base import UnstorableValue
from plp.storage.postgres import PostgresDatabase
from plp.storage.sqlite import SQLiteDatabase
from tests.support import LIVE_SECRET, PASSWORD, ROOT, Client, LiveServer, backends, body, free_port
from tests.support.multiproc import client_for, general_channel, join, open_socket, read_frame

DISK_SIZE = "4m"
PG_DISK_SIZE = "32m"  # a new database copies template1 (about 8 MB) into its tablespace
# Room left above the largest file for the file-size limit: a few WAL frames, so the sends
# before the failing one are really written and acknowledged.
HEADROOM = 16 * 1024
MAX_FILL_SENDS = 200  # a bound on the loop that sends until the disk refuses one
# Many sends and registrations in a short test: the defaults (5/5 s, 30/h) would refuse them.
ENV = {"PLP_CHAT_RATE": "1000/1", "PLP_REGISTRATIONS_PER_ADDRESS": "1000"}
NEW_PASSWORD = "a different long passphrase"
WRITE_FAILED = re.compile(
    r"database write failed: (disk full \(SQLITE_FULL\)|disk I/O error \(SQLITE_IOERR\w*\))"
)
GARBAGE = b"garbage!"


def fill_to_enospc(filler: Path) -> None:
    """Grow `filler` until the kernel answers ENOSPC: the filesystem is full to the page."""
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    chunk = b"\0" * 65536
    try:
        while True:
            os.write(fd, chunk)  # a short write first, then ENOSPC
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


def mount_tmpfs(path: Path, size: str) -> bool:
    """Mount a tmpfs of `size` on `path`; False where this machine does not allow it."""
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def unmount(path: Path) -> None:
    if subprocess.run(["umount", path], capture_output=True, timeout=30).returncode != 0:
        subprocess.run(["umount", "-l", path], capture_output=True, timeout=30)


class SmallDisk:
    """A data dir whose writes can be made to fail: a small tmpfs, or a file-size limit."""

    def __init__(self, root: Path, want: str) -> None:
        self.path = root / "disk"
        self.path.mkdir()
        self.filler = self.path / "filler"
        self.mounted = want == "filesystem" and mount_tmpfs(self.path, DISK_SIZE)
        self.mode = "filesystem" if self.mounted else "file_size_limit"

    @staticmethod
    def ignore_sigxfsz() -> None:
        """preexec_fn: past RLIMIT_FSIZE the kernel sends SIGXFSZ, whose default kills the
        process; ignored (kept across exec), the write fails with EFBIG instead."""
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def full_from_start(self) -> Any:
        """A preexec_fn for a process that must find the disk full from its first write."""
        if self.mounted:
            self.fill()
            return self.ignore_sigxfsz

        def limit() -> None:
            self.ignore_sigxfsz()
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

        return limit

    def fill(self, server: LiveServer | None = None) -> None:
        """Leave (almost) no room: the tmpfs filled to ENOSPC, or the server's size limit set
        just above its largest data file."""
        if self.mounted:
            fill_to_enospc(self.filler)
            return
        assert server is not None and server.proc is not None
        largest = max(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        limit = largest + HEADROOM
        # The server's log is a file too, written by the same process: it must stay below.
        assert server.log_path.stat().st_size < limit // 2, "log too big for the size limit"
        resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    def free(self, server: LiveServer | None = None) -> None:
        """Give the space back."""
        if self.mounted:
            self.filler.unlink(missing_ok=True)
        elif server is not None and server.proc is not None:
            unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
            resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, unlimited)

    def cleanup(self) -> None:
        if self.mounted:
            unmount(self.path)


@pytest.fixture(params=["filesystem", "file_size_limit"])
def small_disk(request, tmp_path):
    disk = SmallDisk(tmp_path, request.param)
    yield disk
    disk.cleanup()


def plp_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment LiveServer gives plp, for runs that are expected to exit at once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLP_", "SESSION_SECRET"))}
    env.update(
        {
            "SESSION_SECRET": LIVE_SECRET,
            "PLP_BCRYPT_ROUNDS": "4",
            "PLP_DATA_DIR": str(data_dir),
            "PLP_HOST": "127.0.0.1",
            "PLP_PORT": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def run_plp(env: dict[str, str], preexec_fn: Any = None) -> subprocess.CompletedProcess[str]:
    """`python run.py` to completion, stdout and stderr through pipes (no size limit on them)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py")],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=preexec_fn,
    )


async def send(
    ws: WebSocketClientConnection, channel: int, text: str, client_id: str
) -> dict[str, Any] | None:
    """Send a message: the acknowledged message, or None when the server closed instead."""
    frame_out = {"type": "send", "channel": channel, "text": text, "clientId": client_id}
    ws.write_message(json.dumps(frame_out))
    while True:
        frame = await read_frame(ws)
        if frame is None:
            return None
        if frame["type"] == "message" and frame.get("clientId") == client_id:
            return frame["message"]
        assert frame["type"] in ("presence", "typing", "message"), frame


async def history(client: Client, channel: int) -> list[dict[str, Any]]:
    """Every message of a channel, paging back through the history API."""
    found: list[dict[str, Any]] = []
    before = ""
    while True:
        response = await client.fetch(f"/api/channels/{channel}/messages?limit=100{before}")
        assert response.code == 200, response.body
        page = body(response)["messages"]
        found = page + found
        if len(page) < 100:
            return found
        before = f"&before={page[0]['id']}"


async def form_register(client: Client, username: str) -> Any:
    token = await client.form_xsrf("/register")
    fields = {"_xsrf": token, "username": username, "password": PASSWORD, "displayName": ""}
    return await client.fetch(
        "/register",
        "POST",
        body=urlencode(fields),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        xsrf=False,
    )


def assert_clean_log(text: str) -> None:
    """No traceback and no 500 anywhere in a server log."""
    assert "Traceback" not in text, text
    assert "plp.access: 500" not in text, text


# ------------------------------------------------------------------------------ full disk


@pytest.mark.gen_test(timeout=180)
async def test_full_disk_answers_503_and_1013_and_keeps_what_was_acknowledged(small_disk):
    server = LiveServer(small_disk.path, env=ENV, preexec_fn=small_disk.ignore_sigxfsz).start()
    restarted: LiveServer | None = None
    sockets: list[WebSocketClientConnection] = []
    try:
        alice, bob = client_for(server), client_for(server)
        assert (await alice.register("alice")).code == 201
        assert (await bob.register("bob")).code == 201
        channel = await general_channel(alice)
        ws = await open_socket(server, alice)
        sockets.append(ws)
        await join(ws, channel)
        acked = [await send(ws, channel, f"before {i} " + "x" * 1500, f"b{i}") for i in range(5)]

        small_disk.fill(server)
        # Use up whatever room is left: sends are acknowledged until the disk refuses one,
        # which closes the socket with 1013 and no ack.
        refused_text = None
        for i in range(MAX_FILL_SENDS):
            text = f"fill {i} " + "y" * 1500
            message = await send(ws, channel, text, f"f{i}")
            if message is None:
                refused_text = text
                break
            acked.append(message)
        else:
            pytest.fail(f"the disk never filled ({small_disk.mode})")
        assert ws.close_code == 1013, (ws.close_code, ws.close_reason)
        assert all(m is not None for m in acked)

        # The API: 503 `unavailable` with Retry-After; nothing half-written (checked below).
        carol = client_for(server)
        response = await carol.register("carol")
        assert response.code == 503, response.body
        assert body(response) == {
            "error": "unavailable",
            "message": "The database is unavailable; try again shortly.",
        }
        assert int(response.headers["Retry-After"]) >= 1
        response = await alice.fetch(
            "/api/users/me/password",
            "POST",
            json_body={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD},
        )
        assert response.code == 503, response.body
        assert body(response)["error"] == "unavailable"

        # A form post: a 503 page, in words, with no traceback.
        response = await form_register(client_for(server), "dave")
        assert response.code == 503, response.body
        assert response.headers["Content-Type"].startswith("text/html")
        assert int(response.headers["Retry-After"]) >= 1
        page = response.body.decode()
        assert "The database is unavailable; try again shortly." in page
        assert "Traceback" not in page and "sqlite" not in page.lower()

        # A chat send on a fresh socket: close 1013, no ack.
        ws_bob = await open_socket(server, bob)
        sockets.append(ws_bob)
        await join(ws_bob, channel)
        assert await send(ws_bob, channel, "while full", "full") is None
        assert ws_bob.close_code == 1013

        # Reads keep working for signed-in users; so does signing in (sessions are in memory;
        # only the audit row is lost, with a log line).
        assert body(await alice.fetch("/api/users/me"))["user"]["username"] == "alice"
        texts = [m["text"] for m in await history(bob, channel)]
        assert texts == [m["text"] for m in acked]
        assert (await client_for(server).login("bob")).code == 200
        assert (await alice.fetch("/healthz")).code == 200

        log = server.log_text()
        assert WRITE_FAILED.search(log), log
        assert "chat frame refused, closing with 1013: database write failed" in log, log
        assert re.search(r"could not store audit event login_succeeded: database write", log)
        assert_clean_log(log)

        # Space back: the same process works again, no restart needed.
        small_disk.free(server)
        assert (await carol.register("carol")).code == 201
        ws_carol = await open_socket(server, carol)
        sockets.append(ws_carol)
        await join(ws_carol, channel)
        after = await send(ws_carol, channel, "space is back", "back")
        assert after is not None
        acked.append(after)

        if small_disk.mounted:
            # A graceful stop on a full disk: the snapshot cannot be written, one line says so.
            small_disk.fill()
            assert server.stop() == 0
            log = server.log_text()
            assert re.search(
                r"could not write the session snapshot \S+: No space left on device; "
                r"users sign in again after the restart",
                log,
            ), log
            small_disk.free()
        else:
            assert server.stop() == 0
        assert_clean_log(server.log_text())

        # Restarted with room: everything acknowledged is there, nothing refused is.
        restarted = LiveServer(small_disk.path, env=ENV).start()
        reader = client_for(restarted)
        assert (await reader.login("alice")).code == 200  # the old password: change refused
        assert (await client_for(restarted).login("alice", NEW_PASSWORD)).code == 401
        stored = await history(reader, channel)
        assert [(m["id"], m["text"]) for m in stored] == [(m["id"], m["text"]) for m in acked]
        assert refused_text not in {m["text"] for m in stored}
        assert "while full" not in {m["text"] for m in stored}
        # The refused registration left no row: the name is free, and the account is new.
        dave = client_for(restarted)
        assert (await dave.login("dave")).code == 401
        assert (await dave.register("dave")).code == 201
        assert_clean_log(restarted.log_text())
    finally:
        for socket in sockets:
            socket.close()
        server.stop()
        if restarted is not None:
            restarted.stop()


def test_development_secret_on_full_disk_exits_2_with_one_line(small_disk):
    result = run_plp(
        {
            k: v
            for k, v in plp_env(small_disk.path).items()
            if k != "SESSION_SECRET"  # development: plp makes one and keeps it in data-dir
        },
        preexec_fn=small_disk.full_from_start(),
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.splitlines() == [
        f"plp: error: cannot keep the development SESSION_SECRET in --data-dir "
        f"{str(small_disk.path)!r}: "
        + ("No space left on device" if small_disk.mounted else "File too large")
    ], result.stderr
    assert not (small_disk.path / "session_secret").exists()  # nothing half-written
    small_disk.free()


def test_first_start_on_full_disk_exits_2_with_one_line(small_disk):
    result = run_plp(plp_env(small_disk.path / "data"), preexec_fn=small_disk.full_from_start())
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(
        r"plp: error: cannot open the SQLite database '.+/plp\.sqlite3': "
        r"(disk full \(SQLITE_FULL\)|disk I/O error \(SQLITE_IOERR\w*\)) \(check --db .+\)",
        lines[0],
    ), lines[0]
    small_disk.free()


SAVE_SNAPSHOT = """
import asyncio, logging, sys
from pathlib import Path
from plp.sessions.memory import MemorySessionStore
from plp.snapshot import save_sessions
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
store = MemorySessionStore(idle_timeout=600, max_age=3600, per_user=10)
for user in range(1, 4):
    asyncio.run(store.create(user, ip="127.0.0.1", user_agent="browser"))
print(save_sessions(store, Path(sys.argv[1]), "s" * 40))
"""


def test_session_snapshot_on_full_disk_is_one_log_line(small_disk):
    """The shutdown snapshot on a full disk: one error line, no traceback, no file left."""
    target = small_disk.path / "sessions.snapshot"
    result = subprocess.run(
        [sys.executable, "-c", SAVE_SNAPSHOT, str(target)],
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=small_disk.full_from_start(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"  # nothing saved
    reason = "No space left on device" if small_disk.mounted else "File too large"
    assert result.stderr.splitlines() == [
        f"ERROR plp.snapshot: could not write the session snapshot {target}: {reason}; "
        "users sign in again after the restart"
    ], result.stderr
    assert [p.name for p in small_disk.path.iterdir() if p.name != "filler"] == []
    small_disk.free()


# ------------------------------------------------------------------------ corrupted file


def _page_geometry(db: Path) -> tuple[int, int, int]:
    """(page size, page count, free pages) from the SQLite header, without opening the file."""
    header = db.read_bytes()[:100]
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    return page_size, db.stat().st_size // page_size, int.from_bytes(header[36:40], "big")


def _overwrite_page(db: Path, page: int, page_size: int) -> None:
    with open(db, "r+b") as handle:
        handle.seek((page - 1) * page_size)
        handle.write((GARBAGE * (page_size // len(GARBAGE) + 1))[:page_size])


async def _make_real_database(server: LiveServer) -> None:
    """Users and messages through the real API and socket, enough for a few dozen pages."""
    first = client_for(server)
    assert (await first.register("user00", displayName="User " + "n" * 50)).code == 201
    for i in range(1, 20):
        assert (await client_for(server).register(f"user{i:02d}")).code == 201
    channel = await general_channel(first)
    ws = await open_socket(server, first)
    await join(ws, channel)
    for i in range(30):
        assert await send(ws, channel, f"message {i} " + "z" * 1200, f"m{i}") is not None
    ws.close()


CORRUPTED_LINE = (
    r"plp: error: the database file {db} is corrupted: .+; "
    r"restore it from a backup \(docs/deploy\.md\)"
)


@pytest.mark.gen_test(timeout=120)
async def test_corrupted_database_refuses_to_start(tmp_path):
    data = tmp_path / "plp"
    server = LiveServer(data, env=ENV).start()
    try:
        await _make_real_database(server)
    finally:
        assert server.stop() == 0
    db = data / "plp.sqlite3"
    assert not Path(f"{db}-wal").exists()  # a clean stop checkpointed everything into the file
    page_size, pages, free = _page_geometry(db)
    assert pages >= 12 and free == 0, (pages, free)  # every page is in use
    _overwrite_page(db, pages // 2 + 1, page_size)

    result = await asyncio.to_thread(run_plp, plp_env(data, **ENV))
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(CORRUPTED_LINE.format(db=re.escape(str(db))), lines[0]), lines[0]
    assert result.stdout == ""

    # create-user checks the same way before writing anything.
    created = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            str(ROOT / "run.py"),
            "create-user",
            "--username",
            "eve",
            "--role",
            "admin",
        ],
        cwd=str(ROOT),
        env=plp_env(data, PLP_PASSWORD=PASSWORD),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 2, created.stderr
    assert re.fullmatch(CORRUPTED_LINE.format(db=re.escape(str(db))), created.stderr.strip())

    # Damage in the first page, behind the header: the schema itself. Same line.
    with open(db, "r+b") as handle:
        handle.seek(100)
        handle.write(GARBAGE * ((page_size - 100) // len(GARBAGE)))
    result = await asyncio.to_thread(run_plp, plp_env(data, **ENV))
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(CORRUPTED_LINE.format(db=re.escape(str(db))), lines[0]), lines[0]


@pytest.mark.gen_test(timeout=120)
async def test_corruption_found_while_running_is_503(tmp_path):
    data = tmp_path / "plp"
    server = LiveServer(data, env=ENV).start()
    try:
        await _make_real_database(server)
        alice = client_for(server)
        assert (await alice.register("alice")).code == 201
        db = data / "plp.sqlite3"

        # Move every page into the main file, then damage the users table and its username
        # index there, as a failing disk would. The checkpoint also makes the server's
        # connection drop its page cache, so its next read sees the damage.
        outside = sqlite3.connect(db)
        try:
            busy, _, _ = outside.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            assert busy == 0
            query = "SELECT rootpage FROM sqlite_schema WHERE tbl_name = 'users'"
            roots = [row[0] for row in outside.execute(query)]
            page_size = outside.execute("PRAGMA page_size").fetchone()[0]
        finally:
            outside.close()
        assert len(roots) == 3  # the table, its username and its sessions_from indexes
        for page in roots:
            _overwrite_page(db, page, page_size)

        response = await client_for(server).login("user01")
        assert response.code == 503, response.body
        assert body(response)["error"] == "unavailable"
        response = await alice.fetch("/api/users/me")
        assert response.code == 503, response.body
        assert int(response.headers["Retry-After"]) >= 1
        assert (await alice.fetch("/healthz")).code == 200

        log = server.log_text()
        assert re.search(
            r"database read failed: the database file "
            + re.escape(str(db))
            + r" is corrupted: database disk image is malformed \(SQLITE_CORRUPT\w*\); "
            r"restore it from a backup \(docs/deploy\.md\)",
            log,
        ), log
        assert_clean_log(log)
    finally:
        server.stop()

    # The next start finds it at once.
    result = await asyncio.to_thread(run_plp, plp_env(data, **ENV))
    assert result.returncode == 2, result.stderr
    assert "is corrupted" in result.stderr and len(result.stderr.splitlines()) == 1


# ----------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_small_disk():
    """A fresh PostgreSQL database whose tablespace is a small tmpfs: (URL, mount point).

    PostgreSQL's WAL stays on its own disk, so a full tablespace fails each statement that
    must grow a table (DiskFull) instead of stopping the server. Needs the test PostgreSQL
    on this machine and the right to mount; skipped otherwise (the SQLite full-disk test
    above never is).
    """
    import psycopg

    url = backends.postgres_url()
    if urlsplit(url).hostname not in ("127.0.0.1", "localhost"):
        pytest.skip("the test PostgreSQL is on another machine: no tablespace on a local disk")
    with psycopg.connect(url, autocommit=True) as conn:
        data_dir = Path(conn.execute("SHOW data_directory").fetchone()[0])
    if not data_dir.exists():
        pytest.skip("the test PostgreSQL's data directory is not on this filesystem")
    # Not under pytest's tmp_path: that is private to root and PostgreSQL must reach it.
    root = Path(tempfile.mkdtemp(prefix="plp-pgdisk-"))
    root.chmod(0o755)
    disk = root / "disk"
    disk.mkdir()
    if not mount_tmpfs(disk, PG_DISK_SIZE):
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip("cannot mount a tmpfs here (needs root): no small disk for PostgreSQL")
    os.chown(disk, data_dir.stat().st_uid, -1)
    suffix = uuid.uuid4().hex[:12]
    name, space = f"plptest_{suffix}", f"plp_small_{suffix}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE TABLESPACE {space} LOCATION '{disk}'")
            conn.execute(f'CREATE DATABASE "{name}" TABLESPACE {space}')
        yield urlsplit(url)._replace(path="/" + name).geturl(), disk
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f"DROP TABLESPACE IF EXISTS {space}")
        unmount(disk)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.services
@pytest.mark.gen_test(timeout=180)
async def test_postgres_disk_full_answers_503_and_1013(pg_small_disk, tmp_path):
    url, disk = pg_small_disk
    server = LiveServer(tmp_path / "plp", env={"PLP_DB": url, **ENV}).start()
    sockets: list[WebSocketClientConnection] = []
    try:
        alice = client_for(server)
        assert (await alice.register("alice")).code == 201
        channel = await general_channel(alice)
        ws = await open_socket(server, alice)
        sockets.append(ws)
        await join(ws, channel)
        acked = [await send(ws, channel, f"before {i} " + "x" * 1500, f"b{i}") for i in range(3)]

        fill_to_enospc(disk / "filler")
        # Rows still fit in pages a table already has; the first one that needs a new page
        # fails. So: send until the socket is closed 1013, register until a 503.
        refused_text = None
        for i in range(MAX_FILL_SENDS):
            text = f"fill {i} " + "y" * 1500
            message = await send(ws, channel, text, f"f{i}")
            if message is None:
                refused_text = text
                break
            acked.append(message)
        else:
            pytest.fail("the tablespace never filled")
        assert ws.close_code == 1013, (ws.close_code, ws.close_reason)
        registered: list[str] = []
        for i in range(MAX_FILL_SENDS):
            response = await client_for(server).register(f"kid{i:03d}")
            if response.code == 503:
                break
            assert response.code == 201, response.body
            registered.append(f"kid{i:03d}")
        else:
            pytest.fail("registrations never failed on the full tablespace")
        assert body(response)["error"] == "unavailable"
        assert int(response.headers["Retry-After"]) >= 1
        refused_name = f"kid{len(registered):03d}"
        assert body(await alice.fetch("/api/users/me"))["user"]["username"] == "alice"

        log = server.log_text()
        assert "PostgreSQL cannot take the write: disk full (DiskFull)" in log, log
        assert "chat frame refused, closing with 1013: PostgreSQL cannot take the write" in log
        assert_clean_log(log)

        (disk / "filler").unlink()
        # Nothing refused was half-written: the refused name is free, the text absent.
        assert (await client_for(server).register(refused_name)).code == 201
        stored = await history(alice, channel)
        assert [(m["id"], m["text"]) for m in stored] == [(m["id"], m["text"]) for m in acked]
        assert refused_text not in {m["text"] for m in stored}
        assert_clean_log(server.log_text())
    finally:
        for socket in sockets:
            socket.close()
        server.stop()


@pytest.mark.services
@pytest.mark.gen_test(timeout=120)
async def test_postgres_read_only_answers_503(tmp_path):
    """A database that refuses writes (a standby, or read-only by setting): 503, then back."""
    import psycopg

    admin_url = backends.postgres_url()
    url, name = backends.fresh_postgres_database(admin_url)
    server = LiveServer(tmp_path / "plp", env={"PLP_DB": url}).start()

    def read_only(on: bool) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            setting = "SET default_transaction_read_only = on" if on else "RESET ALL"
            conn.execute(f'ALTER DATABASE "{name}" {setting}')
            # plp's pooled connections pick the setting up when they are replaced.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )

    try:
        alice = client_for(server)
        assert (await alice.register("alice")).code == 201
        await asyncio.to_thread(read_only, True)
        response = await client_for(server).register("bob")
        assert response.code == 503, response.body
        assert body(response)["error"] == "unavailable"
        assert (await alice.fetch("/api/users/me")).code == 200
        log = server.log_text()
        assert re.search(
            r"backend unavailable \(the database is read-only \(a standby\?\): "
            r"cannot execute INSERT in a read-only transaction \(ReadOnlySqlTransaction\)\)",
            log,
        ), log

        await asyncio.to_thread(read_only, False)
        assert (await client_for(server).register("bob")).code == 201
        assert_clean_log(server.log_text())
    finally:
        server.stop()
        backends.drop_postgres_database(admin_url, name)


@pytest.mark.services
@pytest.mark.gen_test(timeout=120)
async def test_postgres_nul_in_client_text_is_400_or_kept(tmp_path):
    """NUL cannot be stored in PostgreSQL text: refused with 400 where it would be stored,
    replaced in the audit row that records a refused login, and never a 500."""
    import psycopg

    admin_url = backends.postgres_url()
    url, name = backends.fresh_postgres_database(admin_url)
    server = LiveServer(tmp_path / "plp", env={"PLP_DB": url}).start()
    sockets: list[WebSocketClientConnection] = []
    try:
        visitor = client_for(server)
        response = await visitor.register("ali\u0000ce")
        assert response.code == 400 and "username" in body(response)["fields"], response.body
        response = await visitor.register("alice", displayName="Al\u0000ice")
        assert response.code == 400 and "displayName" in body(response)["fields"], response.body

        response = await visitor.login("ali\u0000ce")
        assert response.code == 401 and body(response)["error"] == "invalid_credentials"
        token = await visitor.form_xsrf("/login")
        response = await visitor.fetch(
            "/login",
            "POST",
            body=f"_xsrf={token}&username=bo%00b&password=x",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            xsrf=False,
        )
        assert response.code == 401, response.body

        teacher = client_for(server)
        assert (await teacher.register("teacher")).code == 201
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE users SET role = 'teacher' WHERE username = 'teacher'")
            failed = [
                row[0]
                for row in conn.execute(
                    "SELECT username FROM audit WHERE event = 'login_failed' ORDER BY id"
                )
            ]
        # The refused logins are in the audit log: from JSON, NUL shown as U+FFFD; Tornado
        # already turns control characters in form fields into spaces.
        assert failed == ["ali\ufffdce", "bo b"], failed
        for fields in ({"name": "ne\u0000ws"}, {"name": "news", "description": "a\u0000b"}):
            response = await teacher.fetch("/api/channels", "POST", json_body=fields)
            assert response.code == 400, response.body

        channel = await general_channel(teacher)
        ws = await open_socket(server, teacher)
        sockets.append(ws)
        await join(ws, channel)
        ws.write_message(json.dumps({"type": "send", "channel": channel, "text": "a\u0000b"}))
        frame = await read_frame(ws)
        assert frame["type"] == "error" and frame["code"] == "bad_request", frame
        assert await send(ws, channel, "still fine", "ok") is not None
        assert_clean_log(server.log_text())
    finally:
        for socket in sockets:
            socket.close()
        server.stop()
        backends.drop_postgres_database(admin_url, name)


# --------------------------------------------------------- values no database can hold


@pytest.mark.gen_test
async def test_sqlite_unbindable_text_is_unstorable_value(tmp_path):
    """Defence behind validation: a lone surrogate reaching SQLite is UnstorableValue (a 400
    in a handler), not a UnicodeEncodeError (a 500)."""
    db = SQLiteDatabase(str(tmp_path / "plp.sqlite3"))
    try:
        await db.migrate()
        user = await db.create_user("alice", "Alice", "student", "x")
        channel = (await db.list_channels())[0]
        with pytest.raises(UnstorableValue):
            await db.add_message(channel.id, user, "a\ud800b")
        assert await db.list_messages(channel.id) == []
    finally:
        await db.close()


@pytest.mark.services
@pytest.mark.gen_test
async def test_postgres_nul_is_unstorable_value():
    """The same defence on PostgreSQL: DataError (NUL in text) is UnstorableValue."""
    admin_url = backends.postgres_url()
    url, name = backends.fresh_postgres_database(admin_url)
    db = PostgresDatabase(url)
    try:
        await db.migrate()
        user = await db.create_user("alice", "Alice", "student", "x")
        channel = (await db.list_channels())[0]
        with pytest.raises(UnstorableValue):
            await db.add_message(channel.id, user, "a\x00b")
        with pytest.raises(UnstorableValue):
            await db.create_user("bob", "B\x00b", "student", "x")
        assert [u.username for u in await db.list_users()] == ["alice"]
    finally:
        await db.close()
        backends.drop_postgres_database(admin_url, name)


# ------------------------------------------------------------- registration, all or nothing


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own (it is paused below, which would stall others)."""
    import redis

    if shutil.which("redis-server") is None:
        backends.missing("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
        + ["--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    try:
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                assert proc.poll() is None, "redis-server exited at start"
                time.sleep(0.05)
        yield client, f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


@pytest.mark.gen_test(timeout=120)
async def test_registration_whose_session_cannot_start_leaves_no_account(private_redis, tmp_path):
    """The account row is written before the session; when Redis then refuses the writes
    (CLIENT PAUSE WRITE: reads still answer), the 503 leaves no account behind."""
    control, redis_url = private_redis
    env = {"PLP_SESSION_BACKEND": "redis", "PLP_REDIS_URL": redis_url}
    server = LiveServer(tmp_path / "plp", env=env).start()
    try:
        bob = client_for(server)
        await bob.fetch("/api/auth/csrf")
        await asyncio.to_thread(control.execute_command, "CLIENT", "PAUSE", "15000", "WRITE")
        try:
            response = await bob.register("bob")
        finally:
            await asyncio.to_thread(control.execute_command, "CLIENT", "UNPAUSE")
        assert response.code == 503, response.body
        assert body(response)["error"] == "unavailable"
        log = server.log_text()
        assert re.search(r"registration of 'bob' failed \(.+\); its account was removed", log)

        # No half-made account: the password does not sign in, and the name is free again.
        assert (await client_for(server).login("bob")).code == 401
        assert (await bob.register("bob")).code == 201
        assert (await bob.fetch("/api/users/me")).code == 200
        assert "Traceback" not in server.log_text()
    finally:
        server.stop()
