"""The audit trail: one database row and one JSON line on logger `plp.audit` per event.

`userId`/`username` name the account the event is about; an acting admin goes in `detail`.
Callers never pass passwords, tokens, cookies or hashes; `detail` keys that look like
secrets are dropped here as a second line of defence.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from .storage.base import Database, StorageUnavailable, iso, utcnow

audit_log = logging.getLogger("plp.audit")
log = logging.getLogger(__name__)

EVENTS = frozenset(
    {
        "registered",
        "login_succeeded",
        "login_failed",
        "login_throttled",
        "logout",
        "logout_all",
        "session_revoked",
        "password_changed",
        "role_changed",
        "user_disabled",
        "user_enabled",
        "xsrf_rejected",
        "ws_rejected",
    }
)
_SECRET_WORDS = ("password", "token", "cookie", "hash", "secret")


class Auditor:
    """Writes audit events to the database and the `plp.audit` logger."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # Called with the event name after each record (metrics count logins this way).
        self.listeners: list[Callable[[str], None]] = []

    async def record(
        self,
        event: str,
        *,
        user_id: int | None = None,
        username: str | None = None,
        ip: str | None = None,
        **detail: object,
    ) -> None:
        """Record one event; a database failure is logged, never raised to the request."""
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}")
        clean = {k: v for k, v in detail.items() if not any(w in k.lower() for w in _SECRET_WORDS)}
        line = {
            "at": iso(utcnow()),
            "event": event,
            "userId": user_id,
            "username": username,
            "ip": ip,
            "detail": clean,
        }
        audit_log.info("%s", json.dumps(line, sort_keys=True))
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("audit listener failed for %s", event)
        try:
            await self.db.add_audit(event, user_id=user_id, username=username, ip=ip, detail=clean)
        except StorageUnavailable as exc:
            # Disk full or database down: an outage the log line names, not a bug.
            log.warning("could not store audit event %s: %s", event, exc)
        except Exception:
            log.exception("could not store audit event %s", event)
