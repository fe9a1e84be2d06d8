"""Settings: every option as a `--flag` and a `PLP_*` variable; nothing else reads os.environ.

`plp.cli` turns OPTIONS into argparse flags that keep the raw text; `from_env` checks a flag
and a variable alike, so both get the same one-line error naming where the value came from.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config_values import (
    Choice,
    choice,
    parse_bcrypt_rounds,
    parse_bool,
    parse_chat_rate,
    parse_days,
    parse_db,
    parse_dir,
    parse_host,
    parse_origins,
    parse_path,
    parse_port,
    parse_positive_int,
    parse_redis_url,
    parse_roles,
    parse_rp_id,
    parse_seconds,
)

MIN_SECRET_LENGTH = 32
SECRET_FILE_NAME = "session_secret"
DEFAULT_DB_FILE = "plp.sqlite3"


class ConfigError(Exception):
    """A bad flag, value or environment; the CLI prints it as one line and exits 2."""


@dataclass(frozen=True)
class Settings:
    """Everything plp is configured with; built once by `from_env` and passed down."""

    env: str = "development"
    host: str = "127.0.0.1"
    port: int = 8888
    data_dir: str = "./data"
    db: str = ""
    session_idle_timeout: float = 1800.0
    session_max_age: float = 86400.0
    session_prune_interval: float = 60.0
    sessions_per_user: int = 10
    bcrypt_rounds: int = 12
    cors_origins: tuple[str, ...] = ()
    trust_proxy: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    session_backend: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    metrics_port: int = 0
    login_failures_per_account: int = 5
    login_failures_per_address: int = 30
    registrations_per_address: int = 30
    sockets_per_user: int = 5
    sockets_per_address: int = 1000
    chat_rate: tuple[int, float] = (5, 5.0)
    log_format: str = "text"
    log_level: str = "info"
    audit_retention_days: int = 180
    reset_code_ttl: float = 900.0
    class_join_failures: int = 10
    rp_id: str = ""
    require_mfa: tuple[str, ...] = ()
    reauth_window: float = 600.0
    # Secrets: only ever from the environment (see from_env), never a flag.
    session_secret: str = field(default="", repr=False)
    session_secret_previous: tuple[str, ...] = field(default=(), repr=False)

    @property
    def production(self) -> bool:
        """True when the production rules apply (Secure cookies, __Host- prefix, HSTS)."""
        return self.env == "production"

    @property
    def cookie_name(self) -> str:
        """`__Host-plp_session` in production, so the browser insists on Secure and Path=/."""
        return "__Host-plp_session" if self.production else "plp_session"

    @property
    def db_url(self) -> str:
        """The database to open: the `db` setting or the SQLite file in data-dir."""
        return self.db or str(Path(self.data_dir) / DEFAULT_DB_FILE)

    @property
    def tls(self) -> bool:
        """True when plp terminates TLS itself."""
        return bool(self.tls_cert and self.tls_key)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (tests and the benchmark use it)."""
        return dataclasses.replace(self, **changes)


OPTIONS: dict[str, tuple[Callable[[str], Any], bool, str]] = {
    "env": (choice("development", "production"), False, "development or production"),
    "host": (parse_host, False, "address to listen on"),
    "port": (parse_port, False, "TCP port to listen on"),
    "data-dir": (parse_dir, False, "directory for the database, secret and snapshot"),
    "db": (parse_db, False, "SQLite file path or postgresql:// URL"),
    "session-idle-timeout": (
        parse_seconds,
        False,
        "seconds without activity before a session ends",
    ),
    "session-max-age": (parse_seconds, False, "seconds after login before a session ends"),
    "session-prune-interval": (parse_seconds, False, "seconds between pruner runs"),
    "sessions-per-user": (parse_positive_int, False, "live sessions allowed per user"),
    "bcrypt-rounds": (parse_bcrypt_rounds, False, "bcrypt cost factor"),
    "cors-origins": (parse_origins, False, "comma-separated origins allowed cross-origin"),
    "trust-proxy": (parse_bool, True, "take client address and scheme from proxy headers"),
    "tls-cert": (parse_path, False, "PEM certificate file for HTTPS"),
    "tls-key": (parse_path, False, "PEM private key file for HTTPS"),
    "session-backend": (choice("memory", "redis"), False, "memory or redis"),
    "redis-url": (parse_redis_url, False, "Redis URL for the redis session backend"),
    "metrics-port": (parse_port, False, "loopback port for Prometheus /metrics (0: off)"),
    "login-failures-per-account": (
        parse_positive_int,
        False,
        "failures before an account back-off",
    ),
    "login-failures-per-address": (parse_positive_int, False, "failed logins per address in 5 min"),
    "registrations-per-address": (parse_positive_int, False, "registrations per address per hour"),
    "sockets-per-user": (parse_positive_int, False, "open chat sockets per user"),
    "sockets-per-address": (parse_positive_int, False, "open chat sockets per client address"),
    "chat-rate": (parse_chat_rate, False, "chat sends per seconds, e.g. 5/5"),
    "log-format": (choice("text", "json"), False, "text or json"),
    "log-level": (choice("debug", "info", "warning", "error"), False, "log level"),
    "audit-retention-days": (parse_days, False, "days an audit row is kept before it is pruned"),
    "reset-code-ttl": (parse_seconds, False, "seconds a password reset code stays valid"),
    "class-join-failures": (parse_positive_int, False, "wrong class join codes per user per hour"),
    "rp-id": (parse_rp_id, False, "WebAuthn relying party ID (default: the request's host name)"),
    "require-mfa": (parse_roles, False, "comma-separated roles that must use a passkey or TOTP"),
    "reauth-window": (
        parse_seconds,
        False,
        "seconds a sign-in counts as recent for sensitive actions",
    ),
}


def _field_name(option: str) -> str:
    return option.replace("-", "_")


def _env_name(option: str) -> str:
    return "PLP_" + option.upper().replace("-", "_")


SECRET_VARIABLES = ("SESSION_SECRET", "SESSION_SECRET_PREVIOUS")
_METAVARS: dict[Callable[[str], Any], str] = {
    parse_host: "HOST",
    parse_port: "PORT",
    parse_dir: "DIR",
    parse_db: "FILE|URL",
    parse_seconds: "SECONDS",
    parse_positive_int: "N",
    parse_bcrypt_rounds: "ROUNDS",
    parse_origins: "ORIGINS",
    parse_path: "FILE",
    parse_redis_url: "URL",
    parse_chat_rate: "SENDS/SECONDS",
    parse_days: "DAYS",
    parse_roles: "ROLES",
    parse_rp_id: "HOST",
}


def _default_text(name: str) -> str:
    value = getattr(Settings(), _field_name(name))
    if name == "db":
        return f"{DEFAULT_DB_FILE} in the data dir"
    if name == "rp-id":
        return "the request's host name"
    if isinstance(value, bool):
        return "on" if value else "off"
    if name == "chat-rate":
        return f"{value[0]}/{value[1]:g}"
    if isinstance(value, tuple):
        return ",".join(value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) or "none"


def describe(name: str) -> tuple[str | None, str]:
    """For `--help`: the option's metavar (None for a switch), and its text with the default
    and the PLP_ variable."""
    parse, switch, text = OPTIONS[name]
    if switch:
        metavar = None
    elif isinstance(parse, Choice):
        metavar = "|".join(parse.allowed)
    else:
        metavar = _METAVARS.get(parse, "VALUE")
    return metavar, f"{text} [{_default_text(name)}] ({_env_name(name)})"


def from_env(
    options: Mapping[str, str | bool] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from parsed flags and the environment; a flag wins over a variable."""
    environ = os.environ if environ is None else environ
    options = options or {}
    values: dict[str, Any] = {}
    for name, (parse, _switch, _help) in OPTIONS.items():
        if name in options:
            raw, source = options[name], f"--{name}"
        elif _env_name(name) in environ:
            raw, source = environ[_env_name(name)], _env_name(name)
        else:
            continue
        if raw is True:
            values[_field_name(name)] = True
            continue
        try:
            values[_field_name(name)] = parse(str(raw))
        except ValueError as exc:
            raise ConfigError(f"invalid value {raw!r} for {source}: {exc}") from None
    values["session_secret"] = environ.get("SESSION_SECRET", "")
    values["session_secret_previous"] = tuple(
        s for s in (p.strip() for p in environ.get("SESSION_SECRET_PREVIOUS", "").split(",")) if s
    )
    settings = Settings(**values)
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError("--tls-cert and --tls-key must be given together")
    if settings.session_backend == "redis" and not settings.redis_url:
        raise ConfigError("--session-backend redis needs --redis-url")
    return settings


def ensure_secret(settings: Settings) -> Settings:
    """Return settings with a usable signing secret, or raise ConfigError.

    Production never invents a secret: a missing or short SESSION_SECRET is fatal, because a
    per-process random key would silently log everyone out at each restart and break several
    processes sharing sessions. Development keeps one generated secret in data-dir (0600).
    """
    if settings.session_secret:
        if settings.production and len(settings.session_secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"SESSION_SECRET is shorter than {MIN_SECRET_LENGTH} characters; "
                "production refuses to start with a weak signing key"
            )
        return settings
    if settings.production:
        raise ConfigError("SESSION_SECRET is not set; production refuses to start without it")
    data_dir = Path(settings.data_dir)
    path = data_dir / SECRET_FILE_NAME
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            secret = path.read_text().strip()
        except FileNotFoundError:
            secret = ""
        if len(secret) < MIN_SECRET_LENGTH:
            secret = secrets.token_urlsafe(48)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secret + "\n")
            except OSError:
                path.unlink(missing_ok=True)  # a full disk leaves no half-written secret
                raise
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"cannot keep the development SESSION_SECRET in --data-dir {str(data_dir)!r}: {reason}"
        ) from None
    return settings.replace(session_secret=secret)


def password_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """create-user's password from PLP_PASSWORD, or None to ask on the terminal."""
    return (os.environ if environ is None else environ).get("PLP_PASSWORD")
