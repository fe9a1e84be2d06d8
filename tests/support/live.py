"""Helpers for tests that drive a real `python run.py` process and real Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]  # the repository: tests/support/live.py
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
LIVE_SECRET = "live-test-secret-" + "y" * 40


def in_ci() -> bool:
    """True on CI, where a missing service is a failure rather than a skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip locally, fail on CI, when a required service or tool is missing."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"required on CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """A plp server process on a free port with its own data dir; stderr kept in a file."""

    def __init__(
        self,
        data_dir: Path,
        *,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        command: list[str] | None = None,
        scheme: str = "http",
        preexec_fn: Any = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.args = args or []
        self.extra_env = env or {}
        self.command = command or [sys.executable, str(ROOT / "run.py")]
        self.scheme = scheme
        self.preexec_fn = preexec_fn  # run in the child before exec (e.g. resource limits)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return ("wss" if self.scheme == "https" else "ws") + f"://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> LiveServer:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PLP_") and not k.startswith("SESSION_SECRET")
        }
        env.update(
            {
                "SESSION_SECRET": LIVE_SECRET,
                "PLP_BCRYPT_ROUNDS": "4",
                "PLP_DATA_DIR": str(self.data_dir),
                "PLP_PORT": str(self.port),
                "PLP_HOST": "127.0.0.1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*self.command, *self.args],
            cwd=str(ROOT),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=self.preexec_fn,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.close()
                raise RuntimeError(
                    f"plp exited with {self.proc.returncode} at start:\n{self.log_text()}"
                )
            if self._healthy():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"plp did not become healthy in {timeout} s:\n{self.log_text()}")

    def _healthy(self) -> bool:
        try:
            import ssl

            context = ssl._create_unverified_context() if self.scheme == "https" else None
            with urllib.request.urlopen(self.url + "/healthz", timeout=1, context=context) as r:
                return json.loads(r.read()) == {"status": "ok"}
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Signal the process and wait; its exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        code: int | None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                code = None
        else:
            code = self.proc.returncode
        self.proc = None
        self._log.close()
        return code


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() and shutil.which(CHROMIUM) is not None


def launch_browser(playwright: Any) -> Any:
    """Debian's Chromium under Playwright, with the flags this machine needs."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


class PageProblems:
    """Console errors, page errors and CSP violations seen by a page; a test asserts none."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def watch(self, page: Any) -> Any:
        page.on(
            "console",
            lambda msg: (
                self.items.append(f"console.{msg.type}: {msg.text}")
                if msg.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda exc: self.items.append(f"pageerror: {exc}"))
        return page
