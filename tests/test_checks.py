"""`python run.py check` (SPEC §10): each risky setting is a warning in development (exit 0)
and an error in production (exit 1); a clean production setup passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD_SECRET = "s" * 48


def run_check(tmp_path: Path, *args: str, env: dict[str, str] | None = None, secret=GOOD_SECRET):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PLP_") and not k.startswith("SESSION_SECRET")
    }
    base["PLP_DATA_DIR"] = str(data)
    if secret is not None:
        base["SESSION_SECRET"] = secret
    base.update(env or {})
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "check", *args],
        cwd=str(ROOT),
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def data_dir(tmp_path) -> Path:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    data.chmod(0o700)
    return data


# An RP ID is part of a clean production setup (SPEC §14); its own test leaves it out.
PROD = {"PLP_ENV": "production", "PLP_RP_ID": "school.example.org"}
SAFE_PROD = ("--trust-proxy",)

# (name, extra args, extra env, secret, text expected in the line)
RISKS = [
    ("missing secret", (), {}, None, "SESSION_SECRET is not set"),
    ("short secret", (), {}, "short-secret", "SESSION_SECRET is shorter than 32"),
    (
        "short previous secret",
        (),
        {"SESSION_SECRET_PREVIOUS": GOOD_SECRET + ",tiny"},
        GOOD_SECRET,
        "SESSION_SECRET_PREVIOUS entry is shorter",
    ),
    ("low bcrypt rounds", ("--bcrypt-rounds", "9"), {}, GOOD_SECRET, "bcrypt-rounds is 9"),
]


@pytest.mark.parametrize("name, args, env, secret, text", RISKS, ids=[r[0] for r in RISKS])
def test_each_risk_warns_in_development_and_fails_production(
    tmp_path, data_dir, name, args, env, secret, text
):
    code, out, err = run_check(tmp_path, *args, env=env, secret=secret)
    assert code == 0, (out, err)
    lines = [line for line in out.splitlines() if text in line]
    assert len(lines) == 1 and lines[0].startswith("WARNING: "), out
    assert "ERROR" not in out
    code, out, err = run_check(tmp_path, *args, *SAFE_PROD, env={**env, **PROD}, secret=secret)
    assert code == 1, (out, err)
    lines = [line for line in out.splitlines() if text in line]
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), out
    assert "WARNING" not in out
    assert err == ""


def test_production_without_tls_or_trust_proxy(tmp_path, data_dir):
    code, out, _ = run_check(tmp_path, env=PROD)
    assert code == 1
    assert out.splitlines() == [
        "ERROR: production without TLS: set --tls-cert/--tls-key, or --trust-proxy behind an "
        "HTTPS proxy"
    ]
    code, out, _ = run_check(tmp_path)  # development over plain HTTP is normal
    assert code == 0
    assert out.startswith("OK")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    code, out, _ = run_check(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key), env=PROD)
    # TLS is configured, so "production without TLS" is gone; the missing files are reported.
    assert code == 1
    assert "production without TLS" not in out
    assert out == f"ERROR: cannot read --tls-cert {cert}: No such file or directory\n"


def test_plain_http_origins_only_matter_in_production(tmp_path, data_dir):
    origins = ("--cors-origins", "https://ok.example.org,http://plain.example.org")
    code, out, _ = run_check(tmp_path, *origins)
    assert code == 0 and out.startswith("OK"), out
    code, out, _ = run_check(tmp_path, *origins, *SAFE_PROD, env=PROD)
    assert code == 1
    assert out.splitlines() == [
        "ERROR: cors-origins has a plain-http origin in production: http://plain.example.org"
    ]


def test_world_readable_data_dir_and_secret_file(tmp_path, data_dir):
    data_dir.chmod(0o755)
    code, out, _ = run_check(tmp_path)
    assert code == 0
    assert out.splitlines() == [f"WARNING: data dir {data_dir} is world-readable (chmod 700 it)"]
    code, out, _ = run_check(tmp_path, *SAFE_PROD, env=PROD)
    assert code == 1
    assert out.splitlines() == [f"ERROR: data dir {data_dir} is world-readable (chmod 700 it)"]
    data_dir.chmod(0o700)
    secret_file = data_dir / "session_secret"
    secret_file.write_text(GOOD_SECRET + "\n")
    secret_file.chmod(0o644)
    expected = f"secret file {secret_file} is readable by others (chmod 600 it)"
    code, out, _ = run_check(tmp_path, secret=None)
    assert code == 0
    assert "WARNING: " + expected in out.splitlines()
    code, out, _ = run_check(tmp_path, *SAFE_PROD, env=PROD)
    assert code == 1
    assert out.splitlines() == ["ERROR: " + expected]
    secret_file.chmod(0o600)
    code, out, _ = run_check(tmp_path, *SAFE_PROD, env=PROD)
    assert (code, out.split(":")[0]) == (0, "OK")


def test_everything_wrong_at_once_lists_every_risk(tmp_path, data_dir):
    data_dir.chmod(0o755)
    args = ("--bcrypt-rounds", "4", "--cors-origins", "http://a.example.org")
    code, out, _ = run_check(tmp_path, *args, env=PROD, secret="weak")
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 5 and all(line.startswith("ERROR: ") for line in lines), out
    code, out, _ = run_check(tmp_path, *args, secret="weak")
    assert code == 0
    # Development: the short secret, rounds and data dir (plain-http origins are fine there).
    assert len(out.splitlines()) == 3
    assert all(line.startswith("WARNING: ") for line in out.splitlines())


def test_a_clean_production_setup_passes(tmp_path, data_dir):
    code, out, err = run_check(
        tmp_path, *SAFE_PROD, "--cors-origins", "https://a.example.org", env=PROD
    )
    assert code == 0, out
    assert out == "OK: no risky settings found (production)\n"
    assert err == ""


def test_production_without_rp_id(tmp_path, data_dir):
    expected = "rp-id is not set: passkeys are bound to whatever host name each request names"
    code, out, _ = run_check(tmp_path, *SAFE_PROD, env={"PLP_ENV": "production"})
    assert code == 1
    assert [line for line in out.splitlines() if expected in line] == [out.splitlines()[0]]
    assert out.startswith("ERROR: ") and len(out.splitlines()) == 1
    code, out, _ = run_check(tmp_path)  # development: the request's host name is fine
    assert code == 0 and out.startswith("OK"), out


def test_bad_flags_exit_2_without_traceback(tmp_path, data_dir):
    for args in (("--bcrypt-rounds", "many"), ("--cors-origins", "*"), ("--no-such-flag",)):
        code, out, err = run_check(tmp_path, *args)
        assert code == 2, args
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err


def test_unusable_tls_files_and_readable_key(tmp_path, data_dir):
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    cert.write_text("not a certificate\n")
    key.write_text("not a key\n")
    key.chmod(0o644)
    code, out, _ = run_check(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key), env=PROD)
    assert code == 1
    assert "ERROR: --tls-cert" in out and "not a valid PEM certificate chain" in out
    assert f"ERROR: TLS key {key} is readable by others" in out
    # The same files in development: warnings only.
    code, out, _ = run_check(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key))
    assert code == 0
    assert "WARNING: --tls-cert" in out
