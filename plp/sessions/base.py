"""The session-store interface: what a session is and what every backend must guarantee.

A session is created only at login or registration. The browser holds an opaque random token
(signed by Tornado); stores are keyed by `hash_token(token)`, so the raw token is never kept,
logged or shown. Users see sessions by their `handle`, a separate random id.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..storage.base import User

log = logging.getLogger(__name__)

TOKEN_BYTES = 32  # 256 bits from `secrets`
# A touch moves last-seen only when it is this stale, so busy sessions do not write per request.
TOUCH_GRANULARITY = 1.0

# Why a session ended; sockets and the audit log see these.
END_LOGOUT = "logout"
END_REVOKED = "revoked"
END_PASSWORD = "password_changed"
END_DISABLED = "disabled"
END_EXPIRED = "expired"
END_CAPPED = "session_limit"

# How a session signed in (SPEC §14), shown to its user on /sessions and in the API.
METHOD_PASSWORD = "password"
METHOD_PASSKEY = "passkey"
METHOD_TOTP = "password+totp"
METHOD_RESET = "reset"
METHODS = (METHOD_PASSWORD, METHOD_PASSKEY, METHOD_TOTP, METHOD_RESET)

EndListener = Callable[[str, int, str], None]


def new_token() -> str:
    """A fresh opaque session token (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The store key for a token: SHA-256 hex; a leaked store does not yield usable cookies."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(slots=True)
class Session:
    """One live session. Times are Unix seconds."""

    key: str
    handle: str
    user_id: int
    created_at: float
    last_seen: float
    ip: str
    user_agent: str
    method: str = METHOD_PASSWORD
    # The last time this session proved who it is (sign-in or reauth): the clock of the
    # recent-sign-in rule of SPEC §14. 0.0 (a record from before it existed) means never.
    auth_at: float = 0.0

    def deadline(self, idle_timeout: float, max_age: float) -> float:
        """When this session ends unless touched: idle or absolute expiry, whichever first."""
        return min(self.last_seen + idle_timeout, self.created_at + max_age)

    def expired(self, now: float, store: SessionStore) -> bool:
        """True once `now` is at or past the deadline under the store's timeouts."""
        return now >= self.deadline(store.idle_timeout, store.max_age)


def end_reason(session: Session, user: User | None) -> str | None:
    """Why a live session must end now, judged by its user's record as it is; None: it may go on.

    A disabled or deleted user ends it, and so does a password reset after it began: the
    user's `sessions_from` cut-off, written also by the command line while a server holds the
    session in memory (see plp/auth/cutoff.py).
    """
    if user is None or user.disabled:
        return END_DISABLED
    if session.created_at < user.sessions_from:
        return END_PASSWORD
    return None


def mint_session(
    user_id: int, *, ip: str, user_agent: str, now: float, method: str = METHOD_PASSWORD
) -> tuple[str, Session]:
    """A fresh token and its Session (keyed by the token's hash); every store starts here."""
    token = new_token()
    session = Session(
        key=hash_token(token),
        handle=new_token()[:22],
        user_id=user_id,
        created_at=now,
        last_seen=now,
        ip=ip,
        # Many sessions share a handful of browsers: intern to keep one copy of each.
        user_agent=sys.intern(user_agent[:512]),
        method=method,
        auth_at=now,
    )
    return token, session


class SessionStore(abc.ABC):
    """Server-side sessions with idle and absolute expiry and a per-user cap.

    Every lookup checks expiry itself, so an expired session is refused at once, whether or
    not the pruner has run. End listeners hear of every ended session (in every process, for
    shared backends) so open chat sockets can be closed.
    """

    def __init__(
        self,
        *,
        idle_timeout: float,
        max_age: float,
        per_user: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.max_age = max_age
        self.per_user = per_user
        self.clock = clock
        self._listeners: list[EndListener] = []

    def add_end_listener(self, listener: EndListener) -> None:
        """Call `listener(key, user_id, reason)` whenever a session ends."""
        self._listeners.append(listener)

    def _notify_end(self, key: str, user_id: int, reason: str) -> None:
        for listener in self._listeners:
            try:
                listener(key, user_id, reason)
            except Exception:
                log.exception("session end listener failed")

    @abc.abstractmethod
    async def create(
        self, user_id: int, *, ip: str, user_agent: str, method: str = METHOD_PASSWORD
    ) -> tuple[str, Session]:
        """Start a session signed in by `method` and return (token, session); the token is
        never stored.

        If the user already has `per_user` live sessions, the oldest ends first.
        """

    @abc.abstractmethod
    async def renew_auth(self, session: Session) -> bool:
        """Record that the session proved its user again now (reauth); same token.

        False if the session is no longer live.
        """

    @abc.abstractmethod
    async def get(self, token: str) -> Session | None:
        """The live session for a token; None if unknown, ended or expired."""

    @abc.abstractmethod
    async def get_by_key(self, key: str) -> Session | None:
        """The live session for a store key; None if unknown, ended or expired."""

    @abc.abstractmethod
    async def touch(self, session: Session) -> None:
        """Record activity now, pushing back the idle expiry (never the absolute one)."""

    @abc.abstractmethod
    async def end(self, key: str, reason: str) -> bool:
        """End the session with that key; False if it was not live."""

    @abc.abstractmethod
    async def end_by_handle(self, user_id: int, handle: str, reason: str) -> bool:
        """End one of the user's own sessions by handle; False if the user has no such one."""

    @abc.abstractmethod
    async def end_all_for_user(
        self, user_id: int, reason: str, *, except_key: str | None = None
    ) -> int:
        """End every session of a user (but `except_key`); return how many ended."""

    @abc.abstractmethod
    async def list_for_user(self, user_id: int) -> list[Session]:
        """The user's live sessions, oldest first."""

    @abc.abstractmethod
    async def prune_expired(self) -> int:
        """Drop expired sessions; cost grows with the number expired, not the number live."""

    @abc.abstractmethod
    async def count(self) -> int:
        """Live sessions in this store (may include not-yet-pruned expired ones)."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect before serving (a shared store); nothing to do in memory."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources held by the store."""


class SessionStoreUnavailable(Exception):
    """The shared session backend cannot be reached; requests needing a session get 503."""
