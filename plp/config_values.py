"""Parsers for setting values: each turns the raw text of a flag or `PLP_*` variable into
its value, or raises `ValueError` with a one-line reason, which plp/config.py turns into a
`ConfigError` naming the flag or variable it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# SPEC §1: every duration is from 1 s to 10 years; past that a timer or date overflows.
MIN_SECONDS = 1.0
MAX_SECONDS = 10 * 365.25 * 86400
MAX_DAYS = int(MAX_SECONDS // 86400)


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected 1/true/yes or 0/false/no")


def parse_int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError("must be a whole number") from None


def parse_positive_int(raw: str) -> int:
    value = parse_int(raw)
    if value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def parse_port(raw: str) -> int:
    value = parse_int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number from 0 to 65535")
    return value


def parse_seconds(raw: str) -> float:
    problem = f"must be a number of seconds from {MIN_SECONDS:g} to {MAX_SECONDS:.0f} (10 years)"
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(problem) from None
    # NaN fails both comparisons, so it is refused too.
    if not MIN_SECONDS <= value <= MAX_SECONDS:
        raise ValueError(problem)
    return value


def parse_days(raw: str) -> int:
    value = parse_int(raw)
    if not 1 <= value <= MAX_DAYS:
        raise ValueError(f"must be a whole number of days from 1 to {MAX_DAYS} (10 years)")
    return value


@dataclass(frozen=True)
class Choice:
    """Parses one of a few words, in any case; `allowed` also names them in --help."""

    allowed: tuple[str, ...]

    def __call__(self, raw: str) -> str:
        value = raw.strip().lower()
        if value not in self.allowed:
            raise ValueError("must be one of " + ", ".join(self.allowed))
        return value


def choice(*allowed: str) -> Choice:
    return Choice(allowed)


def parse_bcrypt_rounds(raw: str) -> int:
    value = parse_int(raw)
    if not 4 <= value <= 31:
        raise ValueError("must be from 4 to 31")
    return value


_ORIGIN_RE = re.compile(
    r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$"
)


def parse_origins(raw: str) -> tuple[str, ...]:
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


def parse_chat_rate(raw: str) -> tuple[int, float]:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*", raw)
    if not match or int(match.group(1)) < 1 or float(match.group(2)) <= 0:
        raise ValueError("expected SENDS/SECONDS, e.g. 5/5")
    return int(match.group(1)), float(match.group(2))


def parse_roles(raw: str) -> tuple[str, ...]:
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


def parse_rp_id(raw: str) -> str:
    value = raw.strip().lower()
    # A WebAuthn RP ID is a bare host name: no scheme, port, path or spaces.
    if value and not re.fullmatch(
        r"[a-z0-9]([a-z0-9\-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]*[a-z0-9])?)*", value
    ):
        raise ValueError("must be a host name such as school.example.org (no scheme or port)")
    return value


def parse_db(raw: str) -> str:
    value = raw.strip()
    if value.startswith(("postgres://", "postgresql://")):
        if not urlsplit(value).hostname and "host=" not in value:
            raise ValueError("a postgresql:// URL needs a host")
        return value
    if "://" in value:
        raise ValueError("expected a SQLite file path or a postgresql:// URL")
    return value


def parse_redis_url(raw: str) -> str:
    value = raw.strip()
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return value


def parse_path(raw: str) -> str:
    if "\x00" in raw:
        raise ValueError("must not contain NUL")
    return raw


def parse_host(raw: str) -> str:
    value = raw.strip()
    # An empty host would make Tornado listen on every interface: never by accident.
    if not value or any(ch.isspace() for ch in value) or "\x00" in value:
        raise ValueError("must be an address or host name, e.g. 127.0.0.1 (0.0.0.0 for all)")
    return value


def parse_dir(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return parse_path(raw)


# name -> (parser, is_switch, help)
