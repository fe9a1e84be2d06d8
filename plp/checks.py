"""`plp check`: the configuration audit of SPEC §10 (errors in production, warnings in dev)."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

from .config import MIN_SECRET_LENGTH, SECRET_FILE_NAME, ConfigError, Settings
from .security import ssl_context

MIN_BCRYPT_ROUNDS = 10


def find_risks(settings: Settings) -> list[str]:
    """Every risky setting, as one human sentence each."""
    risks: list[str] = []
    secret = settings.session_secret
    if not secret:
        if settings.production:
            risks.append("SESSION_SECRET is not set")
        else:
            risks.append(
                "SESSION_SECRET is not set; development signs cookies with a generated secret "
                f"kept in {Path(settings.data_dir) / SECRET_FILE_NAME}"
            )
    elif len(secret) < MIN_SECRET_LENGTH:
        risks.append(f"SESSION_SECRET is shorter than {MIN_SECRET_LENGTH} characters")
    for old in settings.session_secret_previous:
        if len(old) < MIN_SECRET_LENGTH:
            risks.append(
                f"a SESSION_SECRET_PREVIOUS entry is shorter than {MIN_SECRET_LENGTH} characters"
            )
            break
    if settings.bcrypt_rounds < MIN_BCRYPT_ROUNDS:
        risks.append(f"bcrypt-rounds is {settings.bcrypt_rounds}; use at least {MIN_BCRYPT_ROUNDS}")
    if settings.production and not settings.tls and not settings.trust_proxy:
        risks.append(
            "production without TLS: set --tls-cert/--tls-key, or --trust-proxy behind an "
            "HTTPS proxy"
        )
    if settings.production and not settings.rp_id:
        risks.append(
            "rp-id is not set: passkeys are bound to whatever host name each request names; "
            "set --rp-id to the site's host name (e.g. school.example.org)"
        )
    if settings.production:
        for origin in settings.cors_origins:
            if origin.startswith("http://"):
                risks.append(f"cors-origins has a plain-http origin in production: {origin}")
    data_dir = Path(settings.data_dir)
    if data_dir.exists() and data_dir.stat().st_mode & stat.S_IROTH:
        risks.append(f"data dir {data_dir} is world-readable (chmod 700 it)")
    secret_file = data_dir / SECRET_FILE_NAME
    if secret_file.exists() and secret_file.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        risks.append(f"secret file {secret_file} is readable by others (chmod 600 it)")
    db = Path(settings.db_url)
    if not settings.db_url.startswith("postgres") and db.exists():
        if db.stat().st_mode & stat.S_IROTH:
            risks.append(f"database file {db} is world-readable (chmod 600 it)")
    if settings.tls:
        try:
            ssl_context(settings)
        except ConfigError as exc:
            risks.append(str(exc))
        key = Path(settings.tls_key)
        if key.is_file() and key.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
            risks.append(f"TLS key {key} is readable by others (chmod 600 it)")
    if settings.metrics_port and settings.metrics_port == settings.port:
        risks.append("metrics-port is the same as port")
    return risks


def run_checks(settings: Settings) -> int:
    """Print each risk as ERROR (production) or WARNING; exit 1 if any is an error."""
    risks = find_risks(settings)
    level = "ERROR" if settings.production else "WARNING"
    for risk in risks:
        print(f"{level}: {risk}")
    if not risks:
        print(f"OK: no risky settings found ({settings.env})")
    sys.stdout.flush()
    return 1 if risks and settings.production else 0


__all__ = ["find_risks", "run_checks"]
