"""The command line as operators use it (SPEC §1): real `python run.py` subprocesses."""

from __future__ import annotations

import fcntl
import http.cookiejar
import json
import os
import pty
import select
import shutil
import socket
import stat
import subprocess
import sys
import termios
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support import ROOT, LiveServer, free_port, need, wait_until_blocking

RUN = [sys.executable, str(ROOT / "run.py")]
GOOD_PASSWORD = "a long enough passphrase"


def clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment minus any plp setting or secret, plus a data dir and fast bcrypt."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PLP_", "SESSION_SECRET")) and k != "PYTHONPATH"
    }
    env.update({"PLP_DATA_DIR": str(data_dir), "PLP_BCRYPT_ROUNDS": "4", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def run(
    args: list[str], env: dict[str, str], *, command: list[str] | None = None, timeout: float = 20
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*(command or RUN), *args],
        cwd=str(ROOT),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_usage_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, exactly one line on stderr naming the problem, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# --- bad input: exit 2, one line, no traceback ----------------------------------------------


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--port", "abc"], ["--port", "'abc'"]),
        (["--port=70000"], ["--port", "70000"]),
        (["--sessions-per-user", "0"], ["--sessions-per-user"]),
        (["--bcrypt-rounds", "2"], ["--bcrypt-rounds"]),
        (["--session-idle-timeout", "nan"], ["--session-idle-timeout"]),
        (["--env", "staging"], ["--env", "staging"]),
        (["--session-backend", "memcached"], ["--session-backend"]),
        (["--log-level", "loud"], ["--log-level"]),
        (["--chat-rate", "fast"], ["--chat-rate"]),
        (["--cors-origins", "*"], ["--cors-origins", "'*'"]),
        (["--cors-origins", "https://ok.example,https://bad.example/path"], ["--cors-origins"]),
        (["--trust-proxy=yes"], ["--trust-proxy"]),
        (["--no-such-flag", "1"], ["--no-such-flag"]),
        (["--port"], ["--port"]),
        (["--host", "--port", "9000"], ["--host"]),
        (["stray"], ["stray"]),
        (["serve", "stray"], ["stray"]),
        (["--tls-cert", "c.pem"], ["--tls-cert", "--tls-key"]),
        (["--session-secret", "x" * 40], ["SESSION_SECRET"]),
        (["--session-secret-previous", "x" * 40], ["SESSION_SECRET_PREVIOUS"]),
        (["check", "--port", "x"], ["--port"]),
    ],
)
def test_bad_flags(tmp_path, args, fragments):
    result = run(args, clean_env(tmp_path, SESSION_SECRET="s" * 40), timeout=15)
    line = assert_usage_error(result, *fragments)
    assert "x" * 40 not in line  # a secret given as a flag is never echoed


@pytest.mark.parametrize(
    "variable, value",
    [
        ("PLP_PORT", "eighty"),
        ("PLP_TRUST_PROXY", "maybe"),
        ("PLP_CORS_ORIGINS", "*"),
        ("PLP_CORS_ORIGINS", "example.com"),
        ("PLP_SESSION_MAX_AGE", "-1"),
        ("PLP_ENV", "prod"),
        ("PLP_DB", "mysql://db/plp"),
    ],
)
def test_bad_variables(tmp_path, variable, value):
    result = run([], clean_env(tmp_path, **{variable: value}), timeout=15)
    assert_usage_error(result, variable, repr(value))


def test_unopenable_database_is_a_usage_error(tmp_path):
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("this is not SQLite " * 100)
    result = run(["--db", str(not_a_db)], clean_env(tmp_path, SESSION_SECRET="s" * 40))
    assert_usage_error(result, str(not_a_db), "--db")


def test_data_dir_that_is_a_file_is_a_usage_error(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    result = run([], clean_env(blocker))
    assert_usage_error(result, "--data-dir")


def test_unknown_command(tmp_path):
    assert_usage_error(run(["launch"], clean_env(tmp_path)), "launch")


# --- production secret rules -----------------------------------------------------------------


def test_production_without_secret_refused(tmp_path):
    result = run([], clean_env(tmp_path, PLP_ENV="production"))
    assert_usage_error(result, "SESSION_SECRET")
    assert not (tmp_path / "session_secret").exists()


def test_production_with_short_secret_refused(tmp_path):
    result = run(["--env", "production"], clean_env(tmp_path, SESSION_SECRET="s" * 31))
    line = assert_usage_error(result, "SESSION_SECRET")
    assert "s" * 31 not in line


# --- serving ---------------------------------------------------------------------------------


def get(url: str, opener: urllib.request.OpenerDirector | None = None) -> tuple[int, str]:
    try:
        with (opener or urllib.request.build_opener()).open(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_fresh_data_dir_serves_pages_and_keeps_dev_secret(tmp_path):
    data_dir = tmp_path / "brand" / "new"
    port = free_port()
    server = LiveServer(data_dir, port=port, env={"SESSION_SECRET": ""}).start()
    try:
        status, html = get(f"http://127.0.0.1:{port}/")
        assert status == 200 and "<html" in html
        status, html = get(f"http://127.0.0.1:{port}/login")
        assert status == 200 and 'name="_xsrf"' in html
        secret_file = data_dir / "session_secret"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        first = secret_file.read_text()
        assert len(first.strip()) >= 32
        assert (data_dir / "plp.sqlite3").exists()
    finally:
        assert server.stop() == 0
    again = LiveServer(data_dir, port=free_port(), env={"SESSION_SECRET": ""}).start()
    try:
        assert (data_dir / "session_secret").read_text() == first
    finally:
        again.stop()


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_default_host_and_port(tmp_path):
    if not port_free(8888):
        pytest.skip("127.0.0.1:8888 is in use by something else")
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            RUN,
            cwd=str(ROOT),
            env=clean_env(tmp_path / "data"),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:

            def serving() -> bool:
                assert proc.poll() is None, log_path.read_text()
                return "serving on http://127.0.0.1:8888" in log_path.read_text()

            wait_until_blocking(serving, 20, "the server to say it is serving", 0.1)
            status, text = get("http://127.0.0.1:8888/healthz")
            assert status == 200 and json.loads(text) == {"status": "ok"}
        finally:
            proc.terminate()
            assert proc.wait(15) == 0


def test_python_dash_m_plp_serves(tmp_path):
    server = LiveServer(tmp_path / "data", command=[sys.executable, "-m", "plp"]).start()
    try:
        assert get(server.url + "/")[0] == 200
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    "command",
    [RUN, [sys.executable, "-m", "plp"]],
    ids=["run.py", "python-m-plp"],
)
def test_help(tmp_path, command):
    result = run(["--help"], clean_env(tmp_path), command=command)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "usage: plp" in result.stdout and "create-user" in result.stdout
    assert "--session-idle-timeout" in result.stdout and "SESSION_SECRET" in result.stdout


def test_console_script(tmp_path):
    script = shutil.which("plp")
    need(script is not None, "the `plp` console script is missing: run `pip install -e .`")
    # PYTHONPATH makes the script import this checkout even if another one was installed.
    env = clean_env(tmp_path, PYTHONPATH=str(ROOT))
    result = run(["--help"], env, command=[script])
    assert result.returncode == 0, result.stderr
    assert "usage: plp" in result.stdout
    assert_usage_error(run(["--port", "x"], env, command=[script]), "--port")


# --- create-user -----------------------------------------------------------------------------


def create_user(data_dir: Path, *args: str, password: str | None = GOOD_PASSWORD, **env: str):
    extra = dict(env)
    if password is not None:
        extra["PLP_PASSWORD"] = password
    return run(["create-user", *args], clean_env(data_dir, **extra))


def test_create_user_then_duplicate(tmp_path):
    result = create_user(tmp_path, "--username", "Teach.Er", "--role", "teacher")
    assert result.returncode == 0, result.stderr
    assert "teach.er" in result.stdout
    assert GOOD_PASSWORD not in result.stdout + result.stderr
    again = create_user(tmp_path, "--username", "TEACH.ER", "--role", "student")
    assert_usage_error(again, "teach.er", "taken")


@pytest.mark.parametrize(
    "args, password, fragment",
    [
        (["--username", "kid", "--role", "student"], "short", "at least 8"),
        (["--username", "kid", "--role", "student"], "password123", "too common"),
        (["--username", "kid", "--role", "student"], "p" * 257, "at most 256"),
        (["--username", "kid", "--role", "student"], "kid", "at least 8"),
        (["--username", "kidkidkid", "--role", "student"], "KidKidKid", "same as the username"),
        (["--username", "kid", "--role", "root"], GOOD_PASSWORD, "--role"),
        (["--username", "kid", "--role", "Admin"], GOOD_PASSWORD, "--role"),
        (["--username", "kid"], GOOD_PASSWORD, "--role"),
        (["--role", "student"], GOOD_PASSWORD, "--username"),
        (["--username", "--role", "student"], GOOD_PASSWORD, "--username"),
        (["--username", "k", "--role", "student"], GOOD_PASSWORD, "Username"),
        (["--username", "has space", "--role", "student"], GOOD_PASSWORD, "Username"),
        (["--username", "kid", "--role", "student", "--bogus"], GOOD_PASSWORD, "--bogus"),
        (["--username", "kid", "--role", "student", "--display-name"], GOOD_PASSWORD, "display"),
        (
            ["--username", "kid", "--role", "student", "--display-name", "a\tb"],
            GOOD_PASSWORD,
            "displayName",
        ),
        (
            ["--username", "kid", "--role", "student", "--display-name", "d" * 65],
            GOOD_PASSWORD,
            "displayName",
        ),
    ],
)
def test_create_user_refusals(tmp_path, args, password, fragment):
    result = create_user(tmp_path, *args, password=password)
    line = assert_usage_error(result, fragment)
    assert password not in line or password == "kid"


def test_create_user_without_password_or_terminal(tmp_path):
    result = create_user(tmp_path, "--username", "kid", "--role", "student", password=None)
    assert_usage_error(result, "PLP_PASSWORD")


def login_opener(base: str, username: str, password: str) -> tuple[int, dict]:
    """Sign in through a running server over real HTTP (XSRF cookie and header)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(base + "/api/auth/csrf", timeout=5) as response:
        token = json.loads(response.read())["token"]
    request = urllib.request.Request(
        base + "/api/auth/login",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json", "X-XSRFToken": token},
        method="POST",
    )
    try:
        with opener.open(request, timeout=5) as response:
            status, data = response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        status, data = exc.code, json.loads(exc.read())
    if status == 200:
        me_status, me = get(base + "/api/users/me", opener)
        assert me_status == 200
        assert json.loads(me)["user"] == data["user"]
    return status, data


def test_create_user_while_server_runs(live_server, tmp_path):
    server = live_server()
    status, _ = login_opener(server.url, "head", GOOD_PASSWORD)
    assert status == 401
    env = {"SESSION_SECRET": "unused-by-create-user-" + "z" * 20}
    result = create_user(
        server.data_dir,
        "--username",
        "head",
        "--role",
        "admin",
        "--display-name",
        "Head <T>",
        **env,
    )
    assert result.returncode == 0, result.stderr
    status, data = login_opener(server.url, "head", GOOD_PASSWORD)
    assert status == 200, data
    assert data["user"]["role"] == "admin"
    assert data["user"]["displayName"] == "Head <T>"
    assert login_opener(server.url, "head", "wrong " + GOOD_PASSWORD)[0] == 401
    # And the other way round: an account registered through the server blocks the CLI.
    assert_usage_error(create_user(server.data_dir, "--username", "HEAD", "--role", "student"))
    assert server.proc is not None and server.proc.poll() is None


def run_on_terminal(args: list[str], env: dict[str, str], answers: list[str]) -> tuple[int, str]:
    """Run plp on a real pseudo-terminal, answering each password prompt in turn."""
    master, slave = pty.openpty()

    def take_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # so getpass can open /dev/tty

    proc = subprocess.Popen(
        [*RUN, *args],
        cwd=str(ROOT),
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=take_terminal,  # runs in the child after setsid, before exec
    )
    os.close(slave)
    output = ""
    pending = list(answers)
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk.decode(errors="replace")
                prompts = output.count("assword: ")
                while pending and prompts > len(answers) - len(pending):
                    os.write(master, pending.pop(0).encode() + b"\n")
            elif proc.poll() is not None:
                break
        return proc.wait(10), output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_create_user_asks_twice_on_terminal(tmp_path):
    env = clean_env(tmp_path)
    args = ["create-user", "--username", "tty.kid", "--role", "student"]
    code, output = run_on_terminal(args, env, [GOOD_PASSWORD, GOOD_PASSWORD + "x"])
    assert code == 2, output
    assert "do not match" in output and "Traceback" not in output
    assert GOOD_PASSWORD not in output  # no echo
    code, output = run_on_terminal(args, env, [GOOD_PASSWORD, GOOD_PASSWORD])
    assert code == 0, output
    assert "Password: " in output and "Repeat password: " in output
    assert "tty.kid" in output and GOOD_PASSWORD not in output
    code, output = run_on_terminal(args, env, ["short", "short"])
    assert code == 2 and "at least 8" in output, output
