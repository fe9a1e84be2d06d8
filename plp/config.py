"""Settings: every option as a `--flag` and a `PLP_*` variable; nothing else reads os.environ.

`plp.cli` turns OPTIONS into argparse flags that keep the raw text; `from_env` checks a flag
and a variable alike, so both get the same one-line error naming where the value came from.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MIN_SECRET_LENGTH = 32
SECRET_FILE_NAME = "session_secret"
DEFAULT_DB_FILE = "plp.sqlite3"
# SPEC §1: every duration is from 1 s to 10 years; past that a timer or date overflows.
MIN_SECONDS = 1.0
MAX_SECONDS = 10 * 365.25 * 86400
MAX_DAYS = int(MAX_SECONDS // 86400)


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


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected 1/true/yes or 0/false/no")


def _int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError("must be a whole number") from None


def _positive_int(raw: str) -> int:
    value = _int(raw)
    if value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def _port(raw: str) -> int:
    value = _int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number from 0 to 65535")
    return value


def _seconds(raw: str) -> float:
    problem = f"must be a number of seconds from {MIN_SECONDS:g} to {MAX_SECONDS:.0f} (10 years)"
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(problem) from None
    # NaN fails both comparisons, so it is refused too.
    if not MIN_SECONDS <= value <= MAX_SECONDS:
        raise ValueError(problem)
    return value


def _days(raw: str) -> int:
    value = _int(raw)
    if not 1 <= value <= MAX_DAYS:
        raise ValueError(f"must be a whole number of days from 1 to {MAX_DAYS} (10 years)")
    return value


@dataclass(frozen=True)
class _Choice:
    """Parses one of a few words, in any case; `allowed` also names them in --help."""

    allowed: tuple[str, ...]

    def __call__(self, raw: str) -> str:
        value = raw.strip().lower()
        if value not in self.allowed:
            raise ValueError("must be one of " + ", ".join(self.allowed))
        return value


def _choice(*allowed: str) -> _Choice:
    return _Choice(allowed)


def _bcrypt_rounds(raw: str) -> int:
    value = _int(raw)
    if not 4 <= value <= 31:
        raise ValueError("must be from 4 to 31")
    return value


_ORIGIN_RE = re.compile(
    r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$"
)


def _origins(raw: str) -> tuple[str, ...]:
    origins = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        match = _ORIGIN_RE.match(item)
        port = (match.group(1) or match.group(2) or ":0")[1:] if match else ""
        if item == "*" or not match or int(port) > 65535:
            raise ValueError(f"{item!r} is not an exact scheme://host[:port] origin")
        origins.append(item.lower())
    return tuple(origins)


def _chat_rate(raw: str) -> tuple[int, float]:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*", raw)
    if not match or int(match.group(1)) < 1 or float(match.group(2)) <= 0:
        raise ValueError("expected SENDS/SECONDS, e.g. 5/5")
    return int(match.group(1)), float(match.group(2))


def _roles(raw: str) -> tuple[str, ...]:
    roles = []
    for item in raw.split(","):
        item = item.strip().lower()
        if not item:
            continue
        if item not in ("student", "teacher", "admin"):
            raise ValueError(f"{item!r} is not a role (student, teacher, admin)")
        if item not in roles:
            roles.append(item)
    return tuple(roles)


def _rp_id(raw: str) -> str:
    value = raw.strip().lower()
    # A WebAuthn RP ID is a bare host name: no scheme, port, path or spaces.
    if value and not re.fullmatch(
        r"[a-z0-9]([a-z0-9\-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]*[a-z0-9])?)*", value
    ):
        raise ValueError("must be a host name such as school.example.org (no scheme or port)")
    return value


def _db(raw: str) -> str:
    value = raw.strip()
    if value.startswith(("postgres://", "postgresql://")):
        if not urlsplit(value).hostname and "host=" not in value:
            raise ValueError("a postgresql:// URL needs a host")
        return value
    if "://" in value:
        raise ValueError("expected a SQLite file path or a postgresql:// URL")
    return value


def _redis_url(raw: str) -> str:
    value = raw.strip()
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return value


def _path(raw: str) -> str:
    if "\x00" in raw:
        raise ValueError("must not contain NUL")
    return raw


def _host(raw: str) -> str:
    value = raw.strip()
    # An empty host would make Tornado listen on every interface: never by accident.
    if not value or any(ch.isspace() for ch in value) or "\x00" in value:
        raise ValueError("must be an address or host name, e.g. 127.0.0.1 (0.0.0.0 for all)")
    return value


def _dir(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return _path(raw)


# name -> (parser, is_switch, help)
OPTIONS: dict[str, tuple[Callable[[str], Any], bool, str]] = {
    "env": (_choice("development", "production"), False, "development or production"),
    "host": (_host, False, "address to listen on"),
    "port": (_port, False, "TCP port to listen on"),
    "data-dir": (_dir, False, "directory for the database, secret and snapshot"),
    "db": (_db, False, "SQLite file path or postgresql:// URL"),
    "session-idle-timeout": (_seconds, False, "seconds without activity before a session ends"),
    "session-max-age": (_seconds, False, "seconds after login before a session ends"),
    "session-prune-interval": (_seconds, False, "seconds between pruner runs"),
    "sessions-per-user": (_positive_int, False, "live sessions allowed per user"),
    "bcrypt-rounds": (_bcrypt_rounds, False, "bcrypt cost factor"),
    "cors-origins": (_origins, False, "comma-separated origins allowed cross-origin"),
    "trust-proxy": (_parse_bool, True, "take client address and scheme from proxy headers"),
    "tls-cert": (_path, False, "PEM certificate file for HTTPS"),
    "tls-key": (_path, False, "PEM private key file for HTTPS"),
    "session-backend": (_choice("memory", "redis"), False, "memory or redis"),
    "redis-url": (_redis_url, False, "Redis URL for the redis session backend"),
    "metrics-port": (_port, False, "loopback port for Prometheus /metrics (0: off)"),
    "login-failures-per-account": (_positive_int, False, "failures before an account back-off"),
    "login-failures-per-address": (_positive_int, False, "failed logins per address in 5 min"),
    "registrations-per-address": (_positive_int, False, "registrations per address per hour"),
    "sockets-per-user": (_positive_int, False, "open chat sockets per user"),
    "sockets-per-address": (_positive_int, False, "open chat sockets per client address"),
    "chat-rate": (_chat_rate, False, "chat sends per seconds, e.g. 5/5"),
    "log-format": (_choice("text", "json"), False, "text or json"),
    "log-level": (_choice("debug", "info", "warning", "error"), False, "log level"),
    "audit-retention-days": (_days, False, "days an audit row is kept before it is pruned"),
    "reset-code-ttl": (_seconds, False, "seconds a password reset code stays valid"),
    "class-join-failures": (_positive_int, False, "wrong class join codes per user per hour"),
    "rp-id": (_rp_id, False, "WebAuthn relying party ID (default: the request's host name)"),
    "require-mfa": (_roles, False, "comma-separated roles that must use a passkey or TOTP"),
    "reauth-window": (_seconds, False, "seconds a sign-in counts as recent for sensitive actions"),
}


def _field_name(option: str) -> str:
    return option.replace("-", "_")


def _env_name(option: str) -> str:
    return "PLP_" + option.upper().replace("-", "_")


SECRET_VARIABLES = ("SESSION_SECRET", "SESSION_SECRET_PREVIOUS")
_METAVARS: dict[Callable[[str], Any], str] = {
    _host: "HOST",
    _port: "PORT",
    _dir: "DIR",
    _db: "FILE|URL",
    _seconds: "SECONDS",
    _positive_int: "N",
    _bcrypt_rounds: "ROUNDS",
    _origins: "ORIGINS",
    _path: "FILE",
    _redis_url: "URL",
    _chat_rate: "SENDS/SECONDS",
    _days: "DAYS",
    _roles: "ROLES",
    _rp_id: "HOST",
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
    elif isinstance(parse, _Choice):
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
