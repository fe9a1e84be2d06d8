"""In-process session store: a dict keyed by token hash plus two expiry queues.

Idle expiry is uniform, so the order of idle deadlines is the order of last activity: an
OrderedDict moved-to-end on touch keeps it in O(1). Absolute expiry follows creation order:
an OrderedDict in insertion order. Both queues are keyed by session key, so a session ended
early (logout, revocation, the per-user cap) leaves them in O(1) at once; nothing waits for
the pruner, and no live session can pin ended ones behind it. The pruner pops from the
front of each queue while the front has expired, so its cost grows with the number of
expired sessions and never with the number of live ones. (OrderedDict, not dict: popping
the front of a plain dict leaves holes that every later `next(iter())` walks over.)
"""

from __future__ import annotations

import math
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from .base import (
    END_CAPPED,
    END_EXPIRED,
    METHOD_PASSWORD,
    METHODS,
    TOUCH_GRANULARITY,
    Session,
    SessionStore,
    hash_token,
    mint_session,
)

# Restored records may be this far in the future (the clock stepped back across a restart).
CLOCK_SLACK = 60.0


class MemorySessionStore(SessionStore):
    """`SessionStore` in this process's memory; snapshot/restore carry it across restarts."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sessions: dict[str, Session] = {}
        self._idle: OrderedDict[str, None] = OrderedDict()
        self._created: OrderedDict[str, Session] = OrderedDict()
        self._by_user: dict[int, dict[str, Session]] = {}

    def _add(self, session: Session) -> None:
        self._sessions[session.key] = session
        self._idle[session.key] = None
        self._created[session.key] = session
        self._by_user.setdefault(session.user_id, {})[session.handle] = session

    def _remove(self, session: Session, reason: str) -> None:
        if self._sessions.pop(session.key, None) is None:
            return
        self._idle.pop(session.key, None)
        self._created.pop(session.key, None)
        mine = self._by_user.get(session.user_id)
        if mine is not None:
            mine.pop(session.handle, None)
            if not mine:
                del self._by_user[session.user_id]
        self._notify_end(session.key, session.user_id, reason)

    async def create(
        self, user_id: int, *, ip: str, user_agent: str, method: str = METHOD_PASSWORD
    ) -> tuple[str, Session]:
        now = self.clock()
        mine = self._by_user.get(user_id)
        if mine and len(mine) >= self.per_user:
            # Expired sessions the pruner has not reached yet do not count against the cap,
            # and they end as expired, not as pushed out by a new login.
            for stale in [s for s in mine.values() if s.expired(now, self)]:
                self._remove(stale, END_EXPIRED)
            mine = self._by_user.get(user_id)
        while mine and len(mine) >= self.per_user:
            oldest = min(mine.values(), key=lambda s: s.created_at)
            self._remove(oldest, END_CAPPED)
            mine = self._by_user.get(user_id)
        token, session = mint_session(user_id, ip=ip, user_agent=user_agent, now=now, method=method)
        self._add(session)
        return token, session

    async def renew_auth(self, session: Session) -> bool:
        if self._sessions.get(session.key) is not session:
            return False
        session.auth_at = self.clock()
        return True

    async def get(self, token: str) -> Session | None:
        return await self.get_by_key(hash_token(token))

    async def get_by_key(self, key: str) -> Session | None:
        session = self._sessions.get(key)
        if session is None:
            return None
        if self.clock() >= session.deadline(self.idle_timeout, self.max_age):
            self._remove(session, END_EXPIRED)
            return None
        return session

    async def touch(self, session: Session) -> None:
        now = self.clock()
        if now - session.last_seen < TOUCH_GRANULARITY:
            return
        if self._sessions.get(session.key) is not session:
            return
        session.last_seen = now
        self._idle.move_to_end(session.key)

    async def end(self, key: str, reason: str) -> bool:
        session = self._sessions.get(key)
        if session is None:
            return False
        self._remove(session, reason)
        return True

    async def end_by_handle(self, user_id: int, handle: str, reason: str) -> bool:
        session = self._by_user.get(user_id, {}).get(handle)
        if session is None:
            return False
        self._remove(session, reason)
        return True

    async def end_all_for_user(
        self, user_id: int, reason: str, *, except_key: str | None = None
    ) -> int:
        ended = [s for s in self._by_user.get(user_id, {}).values() if s.key != except_key]
        for session in ended:
            self._remove(session, reason)
        return len(ended)

    async def list_for_user(self, user_id: int) -> list[Session]:
        now = self.clock()
        live = []
        for session in list(self._by_user.get(user_id, {}).values()):
            if now >= session.deadline(self.idle_timeout, self.max_age):
                self._remove(session, END_EXPIRED)
            else:
                live.append(session)
        return sorted(live, key=lambda s: s.created_at)

    async def prune_expired(self) -> int:
        now = self.clock()
        idle_cutoff = now - self.idle_timeout
        age_cutoff = now - self.max_age
        removed = 0
        idle, sessions = self._idle, self._sessions
        while idle:
            key = next(iter(idle))
            session = sessions[key]
            if session.last_seen > idle_cutoff:
                break
            self._remove(session, END_EXPIRED)
            removed += 1
        created = self._created
        while created:
            session = next(iter(created.values()))
            if session.created_at > age_cutoff:
                break
            self._remove(session, END_EXPIRED)
            removed += 1
        return removed

    async def count(self) -> int:
        return len(self._sessions)

    def snapshot(self) -> list[dict[str, Any]]:
        """Live sessions as plain records (hashed keys only, never a token)."""
        return [
            {
                "key": s.key,
                "handle": s.handle,
                "user_id": s.user_id,
                "created_at": s.created_at,
                "last_seen": s.last_seen,
                "ip": s.ip,
                "user_agent": s.user_agent,
                "method": s.method,
                "auth_at": s.auth_at,
            }
            for s in self._created.values()
        ]

    def restore(
        self, records: Iterable[dict[str, Any]], *, valid: Callable[[Session], bool] | None = None
    ) -> int:
        """Load snapshot records, skipping malformed and expired ones; return how many loaded."""
        now = self.clock()
        loaded = 0
        rows = []
        seen: set[str] = set()
        seen_handles: set[tuple[int, str]] = set()
        for record in records:
            try:
                session = Session(
                    key=str(record["key"]),
                    handle=str(record["handle"]),
                    user_id=int(record["user_id"]),
                    created_at=float(record["created_at"]),
                    last_seen=float(record["last_seen"]),
                    ip=str(record["ip"]),
                    user_agent=sys.intern(str(record["user_agent"])[:512]),
                    # Snapshots from before SPEC §14 have neither: a password sign-in, not
                    # recent.
                    method=str(record.get("method", METHOD_PASSWORD)),
                    auth_at=float(record.get("auth_at", 0.0)),
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            if session.method not in METHODS or not math.isfinite(session.auth_at):
                continue
            if (
                len(session.key) != 64
                or session.key in self._sessions
                or session.key in seen
                or not session.handle
                or session.handle in self._by_user.get(session.user_id, {})
                or (session.user_id, session.handle) in seen_handles
                or not math.isfinite(session.created_at)
                or not session.created_at <= session.last_seen <= now + CLOCK_SLACK
            ):
                continue  # malformed, duplicate, or from the future: never trust it
            if now >= session.deadline(self.idle_timeout, self.max_age):
                continue
            if valid is not None and not valid(session):
                continue
            seen.add(session.key)
            seen_handles.add((session.user_id, session.handle))
            rows.append(session)
        for session in rows:
            self._sessions[session.key] = session
            self._by_user.setdefault(session.user_id, {})[session.handle] = session
            loaded += 1
        # Rebuild both expiry queues so they stay sorted whatever the store held before
        # (once, at start: O(n log n)).
        live = [*self._created.values(), *rows]
        self._created = OrderedDict((s.key, s) for s in sorted(live, key=lambda s: s.created_at))
        self._idle = OrderedDict(
            (s.key, None) for s in sorted(self._sessions.values(), key=lambda s: s.last_seen)
        )
        return loaded
