"""Signing the session cookie with the current secret while still accepting older ones."""

from __future__ import annotations

from tornado.web import create_signed_value, decode_signed_value


class CookieSigner:
    """Tornado signed values (v2, HMAC-SHA256) under the current and any previous secrets."""

    def __init__(self, name: str, secret: str, previous: tuple[str, ...], max_age: float) -> None:
        self.name = name
        self.secret = secret
        self.previous = previous
        self.max_age_days = max_age / 86400.0

    def sign(self, token: str) -> str:
        """The cookie value for a session token."""
        return create_signed_value(self.secret, self.name, token).decode()

    def unsign(self, value: str) -> tuple[str | None, bool]:
        """(token, signed-with-an-old-key) for a cookie value; (None, False) if invalid."""
        # Only v2 values: Tornado logs bad v1 values verbatim, and a cookie never goes in a log.
        if not value.startswith("2|") or len(value) > 1024:
            return None, False
        for index, secret in enumerate((self.secret, *self.previous)):
            raw = decode_signed_value(secret, self.name, value, max_age_days=self.max_age_days)
            if raw is not None:
                try:
                    return raw.decode("ascii"), index > 0
                except UnicodeDecodeError:
                    return None, False
        return None, False
