"""The one-file binary: built once per test session, run from a bare directory and environment."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from plp.snapshot import SNAPSHOT_NAME
from tests.support import LIVE_SECRET, ROOT, LiveServer, free_port, need
from tests.support.web import Chat, Web, run_async, scrape

pytestmark = pytest.mark.slow

# Only system directories: no pyenv, no virtualenv, no site-packages of this checkout.
BARE_PATH = "/usr/bin:/bin"


@pytest.fixture(scope="session")
def binary(tmp_path_factory) -> Path:
    """dist/plp built by scripts/build-binary into a temporary directory (once per session)."""
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        need(False, "PyInstaller is not installed (pip install -e '.[test]')")
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [
            "bash",
            str(ROOT / "scripts" / "build-binary"),
            "--python",
            sys.executable,
            "--dist",
            str(dist),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    built = dist / "plp"
    assert built.is_file() and os.access(built, os.X_OK)
    return built


def bare_command(binary: Path, home: Path, **env: str) -> list[str]:
    """Run the binary with an empty environment but for what it is given, from `home`."""
    settings = [f"{k}={v}" for k, v in env.items()]
    return [
        "env",
        "-i",
        "-C",
        str(home),
        f"PATH={BARE_PATH}",
        f"HOME={home}",
        *settings,
        str(binary),
    ]


@pytest.fixture
def installed(binary, tmp_path) -> Path:
    """The binary copied alone into a fresh directory, as an operator would."""
    home = tmp_path / "host"
    home.mkdir()
    copy = home / "plp"
    shutil.copy2(binary, copy)
    return copy


class BinaryServer(LiveServer):
    """A LiveServer whose process is the binary in a bare environment."""

    def __init__(self, binary: Path, data_dir: Path, **env: str) -> None:
        super().__init__(data_dir)
        self.command = bare_command(
            binary,
            binary.parent,
            SESSION_SECRET=LIVE_SECRET,
            PLP_DATA_DIR=str(data_dir),
            PLP_PORT=str(self.port),
            PLP_HOST="127.0.0.1",
            PLP_BCRYPT_ROUNDS="4",
            **env,
        )


@pytest.fixture
def binary_server(installed):
    servers: list[BinaryServer] = []

    def start(data_dir: Path | None = None, **env: str) -> BinaryServer:
        server = BinaryServer(installed, data_dir or installed.parent / "data", **env).start(60)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_binary_needs_no_python_packages(installed):
    # In the bare environment, whatever python3 there is (if any) cannot import plp's
    # dependencies; the binary still runs.
    probe = subprocess.run(
        [
            "env",
            "-i",
            "-C",
            str(installed.parent),
            f"PATH={BARE_PATH}",
            "sh",
            "-c",
            "python3 -c 'import tornado' 2>&1 || true",
        ],
        capture_output=True,
        text=True,
    )
    assert "No module named" in probe.stdout or "not found" in probe.stdout, probe.stdout
    result = subprocess.run(
        bare_command(installed, installed.parent) + ["--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "--metrics-port" in result.stdout


def test_binary_serves_pages_static_and_accounts(binary_server):
    server = binary_server()
    web = Web(server)
    status, headers, page = web.request("/login")
    assert status == 200 and b'name="_xsrf"' in page  # templates are inside the binary
    status, headers, css = web.request("/static/style.css")
    assert status == 200 and headers["Content-Type"].startswith("text/css") and css
    assert web.register("binary.kid") == 201
    assert web.request("/api/auth/logout", "POST")[0] == 200
    assert web.login("binary.kid") == 200
    # The common-password list (package data read through importlib.resources) loads:
    status, _, body = web.request(
        "/api/users/me/password",
        "POST",
        {"currentPassword": "a long enough passphrase", "newPassword": "password"},
    )
    assert status == 400 and "common" in str(body).lower()
    assert web.me() == 200
    status, _, body = web.request("/api/openapi.json")  # package data too
    assert status == 200 and body["openapi"].startswith("3.1.") and "/api/channels" in body["paths"]
    # WebAuthn (py_webauthn on `cryptography`) is inside the binary: passkey options work.
    status, _, body = web.request("/api/users/me/passkeys/options", "POST")
    assert status == 200 and body["attestation"] == "none" and body["challenge"]

    async def chat() -> dict:
        conn = await Chat.open(web)
        await conn.send({"type": "join", "channel": 1})
        await conn.expect("joined", channel=1)
        await conn.send({"type": "send", "channel": 1, "text": "hi from the binary"})
        frame = await conn.expect("message", channel=1)
        await conn.shut()
        return frame

    frame = run_async(chat)
    assert frame["message"]["text"] == "hi from the binary"
    assert frame["message"]["author"]["username"] == "binary.kid"
    status, _, body = web.request("/api/channels/1/messages")
    assert [m["text"] for m in body["messages"]] == ["hi from the binary"]


def test_binary_restarts_gracefully_keeping_sessions(binary_server, installed):
    server = binary_server()
    web = Web(server)
    assert web.register("keeper") == 201
    assert server.stop(signal.SIGTERM) == 0
    snapshot = server.data_dir / SNAPSHOT_NAME
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    db = server.data_dir / "plp.sqlite3"
    assert stat.S_IMODE(db.stat().st_mode) & 0o077 == 0  # umask 077: private database
    again = binary_server(server.data_dir)
    web.server = again
    assert web.me() == 200


def test_binary_metrics_and_check(binary_server, installed):
    port = free_port()
    server = binary_server(PLP_METRICS_PORT=str(port))
    assert Web(server).register("metered") == 201
    assert scrape(port)["plp_sessions_live"] == 1
    server.data_dir.chmod(0o700)  # made by the test harness; systemd's StateDirectory is 0700
    check = subprocess.run(
        bare_command(installed, installed.parent, SESSION_SECRET=LIVE_SECRET)
        + ["check", "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0 and "OK: no risky settings found" in check.stdout, check.stdout
