"""The argparse command line (SPEC §1): each command's own `--help`, `--version`, and the
one-line errors argparse would otherwise word its own way. Real `python run.py` processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import plp
from plp.config import OPTIONS, Settings
from tests.support import ROOT

RUN = [sys.executable, str(ROOT / "run.py")]
SECRET_VALUE = "never-echo-this-secret-" + "q" * 20
ACCOUNT_FLAGS = ("--username", "--role", "--display-name")


def plp_run(
    args: list[str], data_dir: Path, command: list[str] = RUN
) -> subprocess.CompletedProcess:
    """Run plp to completion with no PLP_ variable or secret from the test's environment."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PLP_", "SESSION_SECRET")) and k != "PYTHONPATH"
    }
    env.update({"PLP_DATA_DIR": str(data_dir), "PLP_PASSWORD": "a long enough passphrase"})
    return subprocess.run(
        [*command, *args],
        cwd=str(ROOT),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
    )


def help_of(args: list[str], data_dir: Path) -> str:
    """The help text (whitespace folded, since argparse wraps lines), after checking exit 0."""
    result = plp_run(args, data_dir)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return " ".join(result.stdout.split())


def error_line(args: list[str], data_dir: Path) -> str:
    """The one stderr line of a refused command line (exit 2, no traceback)."""
    result = plp_run(args, data_dir)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plp: error: "), result.stderr
    return lines[0]


# Defaults the help states in words, checked by name below.
SHOWN_IN_WORDS = ("db", "chat-rate", "cors-origins", "tls-cert", "tls-key", "rp-id", "require-mfa")


def default_shown(name: str) -> str:
    value = getattr(Settings(), name.replace("-", "_"))
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def test_create_user_help_shows_its_own_options(tmp_path):
    text = help_of(["create-user", "--help"], tmp_path)
    assert text.startswith("usage: plp create-user --username U --role student|teacher|admin")
    for flag in ACCOUNT_FLAGS:
        assert flag in text
    assert "PLP_PASSWORD" in text
    assert "--data-dir DIR" in text and "(PLP_DB)" in text  # settings it uses
    assert "plp check" not in text and "commands:" not in text  # not the global help
    assert not (tmp_path / "plp.sqlite3").exists()


def test_help_after_account_flags_creates_nothing(tmp_path):
    text = help_of(["create-user", "--username", "kid", "--role", "student", "-h"], tmp_path)
    assert text.startswith("usage: plp create-user")
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["serve", "check"])
def test_serve_and_check_help(tmp_path, command):
    text = help_of([command, "--help"], tmp_path)
    assert text.startswith(f"usage: plp {command} [--setting value ...]")
    assert "commands:" not in text
    for flag in ACCOUNT_FLAGS:
        assert flag not in text
    assert "SESSION_SECRET" in text


def test_flags_without_a_command_get_serve_help(tmp_path):
    text = help_of(["--port", "9000", "--help"], tmp_path)
    assert text.startswith("usage: plp serve")


@pytest.mark.parametrize(
    "args", [["--help"], ["serve", "-h"], ["create-user", "-h"], ["check", "-h"]]
)
def test_every_help_lists_every_setting_with_default_and_variable(tmp_path, args):
    text = help_of(args, tmp_path)
    for name in OPTIONS:
        variable = "PLP_" + name.upper().replace("-", "_")
        match = re.search(rf"--{name} .*?\[([^\]]*)\] \({variable}\)", text)
        assert match, name
        if name not in SHOWN_IN_WORDS:
            assert match.group(1) == default_shown(name), name
    assert "[5/5] (PLP_CHAT_RATE)" in text
    assert "[none] (PLP_REQUIRE_MFA)" in text
    assert "[the request's host name] (PLP_RP_ID)" in text
    assert "--session-secret" not in text  # refused flags are not offered


@pytest.mark.parametrize("command", [RUN, [sys.executable, "-m", "plp"]], ids=["run.py", "-m"])
def test_version(tmp_path, command):
    result = plp_run(["--version"], tmp_path, command=command)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"plp {plp.__version__}\n"


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["create-user"], "create-user needs --username, --role"),
        (["create-user", "--username", "kid"], "create-user needs --role"),
        (["create-user", "--username=", "--role", "admin"], "create-user needs --username"),
        (["create-user", "--username", "kid", "--role", "root"], "'root' for --role"),
        (
            ["create-user", "--username", "kid", "--role", "student", "--port", "x"],
            "'x' for --port",
        ),
        (["launch"], "unknown command 'launch' (expected serve, create-user, check)"),
        (["serve", "--version"], "unknown option --version"),
        (["--po", "80"], "unknown option --po"),  # no abbreviations
        (["--trust-proxy=", "x"], "--trust-proxy is a switch and takes no value"),
        (["--"], "unexpected argument '--'"),
    ],
)
def test_argparse_mistakes_are_plp_lines(tmp_path, args, fragment):
    assert fragment in error_line(args, tmp_path)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--sesion-secret=" + SECRET_VALUE], "unknown option --sesion-secret"),
        (["--session-secret=" + SECRET_VALUE, "--nope"], "(SESSION_SECRET)"),
        (["--nope", "--session-secret", SECRET_VALUE], "(SESSION_SECRET)"),
        (["--port", "--session-secret", SECRET_VALUE], "--port needs a value"),
        (["check", "--session-secret", SECRET_VALUE], "(SESSION_SECRET)"),
        (["create-user", "--session-secret-previous", SECRET_VALUE], "(SESSION_SECRET_PREVIOUS)"),
    ],
)
def test_a_secret_on_the_command_line_is_never_echoed(tmp_path, args, fragment):
    line = error_line(args, tmp_path)
    assert fragment in line and SECRET_VALUE not in line
