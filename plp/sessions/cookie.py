"""Signing the session cookie with the current secret while still accepting older ones."""

from __future__ import annotations

import time
from collections.abc import Callable

from tornado.web import create_signed_value, decode_signed_value

from .base import hash_token

# Cookie values whose signature was checked, so a busy session pays for one HMAC, not one
# per request. Bounded: the oldest entry goes first. Only values signed with the current key
# are kept, and they map to the store key (the token's hash), never to the raw token.
VERIFIED_CACHE_SIZE = 4096


class CookieSigner:
    """Tornado signed values (v2, HMAC-SHA256) under the current and any previous secrets."""

    def __init__(
        self,
        name: str,
        secret: str,
        previous: tuple[str, ...],
        max_age: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.secret = secret
        self.previous = previous
        self.max_age = max_age
        self.max_age_days = max_age / 86400.0
        self.clock = clock
        # value -> (store key, signature valid until)
        self._verified: dict[str, tuple[str, float]] = {}

    def sign(self, token: str) -> str:
        """The cookie value for a session token."""
        return create_signed_value(self.secret, self.name, token).decode()

    def unsign(self, value: str) -> tuple[str | None, bool]:
        """(token, signed-with-an-old-key) for a cookie value; (None, False) if invalid."""
        # Only v2 values: Tornado logs bad v1 values verbatim, and a cookie never goes in a log.
        if not value.startswith("2|") or len(value) > 1024:
            return None, False
        for index, secret in enumerate((self.secret, *self.previous)):
            raw = decode_signed_value(
                secret, self.name, value, max_age_days=self.max_age_days, clock=self.clock
            )
            if raw is not None:
                try:
                    return raw.decode("ascii"), index > 0
                except UnicodeDecodeError:
                    return None, False
        return None, False

    def session_key(self, value: str) -> tuple[str | None, str | None]:
        """(store key, token to re-issue under the current key) for a cookie value.

        The key is None for an invalid value; the token is None unless the value was signed
        with a previous secret and must be re-issued.
        """
        hit = self._verified.get(value)
        if hit is not None:
            if self.clock() <= hit[1]:
                return hit[0], None
            del self._verified[value]
            return None, None
        token, old_key = self.unsign(value)
        if token is None:
            return None, None
        key = hash_token(token)
        if old_key:
            return key, token
        self._remember(value, key)
        return key, None

    def forget(self, value: str) -> None:
        """Drop a value from the verified cache (its session ended or was never live)."""
        self._verified.pop(value, None)

    def _remember(self, value: str, key: str) -> None:
        # A verified v2 value is "2|1:K|10:TIMESTAMP|..."; Tornado accepts it until
        # TIMESTAMP + max age, and so does the cache.
        try:
            signed_at = int(value.split("|", 3)[2].split(":", 1)[1])
        except (IndexError, ValueError):
            return
        cache = self._verified
        if len(cache) >= VERIFIED_CACHE_SIZE:
            del cache[next(iter(cache))]
        cache[value] = (key, signed_at + self.max_age)
