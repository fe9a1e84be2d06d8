"""The audit trail: database rows and JSON lines on logger `plp.audit`, bounded against floods.

`userId`/`username` name the account the event is about; an acting admin goes in `detail`.
Callers never pass passwords, tokens, cookies or hashes; `detail` keys that look like
secrets are dropped here as a second line of defence.

Nothing a hostile client sends can make the trail grow without bound (SPEC §9):

- Refused requests (`COALESCED`) are counted, not stored one by one: one row per event kind,
  client address and UTC minute, written (and logged) at the first refusal, whose
  `detail.count` is brought up to date every FLUSH_SECONDS. The row is found by a unique
  `tally_key` and counts are added in one statement, so processes sharing the database add
  to the same row. When a minute is over the row is closed with one more `plp.audit` line
  carrying this process's final count and `"summary": true`. The rows being counted are
  capped (OPEN_MAX); past that, refusals from further addresses share one row per kind and
  minute with `detail.overflow` (and no address).
- Every client-given string is cut to TEXT_MAX characters, with NUL and lone surrogates
  (which PostgreSQL and UTF-8 refuse) replaced.
- Writes go through one queue and one writer task, so a slow database cannot make them pile
  up: past QUEUE_MAX waiting writes, new ones are dropped (counted, and logged once per
  episode), and a request waits at most WAIT_MAX for its own row.
- `prune` deletes rows older than a given time (server.py runs it for audit-retention-days).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

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
        "message_removed",
        "class_created",
        "class_deleted",
        "class_joined",
        "class_join_failed",
        "class_member_added",
        "class_member_removed",
    }
)
# Refused requests: an attacker can send as many as the network carries, so they are counted.
COALESCED = frozenset({"xsrf_rejected", "login_throttled", "ws_rejected"})
TEXT_MAX = 200
# Counts reach their row within this (SPEC §9 allows 5 s; the writer queue needs the rest).
FLUSH_SECONDS = 2.0
OPEN_MAX = 256
QUEUE_MAX = 1000
WAIT_MAX = 1.0  # seconds
PRUNE_BATCH = 5000
_SECRET_WORDS = ("password", "token", "cookie", "hash", "secret")
# NUL cannot be stored by PostgreSQL and lone surrogates cannot be encoded as UTF-8.
_UNSTORABLE_RE = re.compile(r"[\x00\ud800-\udfff]")
_OVERFLOW = "(overflow)"  # the key of the shared row once OPEN_MAX addresses are counted

Key = tuple[str, str | None, int]


def clean_text(value: str) -> str:
    """At most TEXT_MAX characters, with NUL and lone surrogates replaced by U+FFFD."""
    return _UNSTORABLE_RE.sub("\ufffd", value[:TEXT_MAX])


def _clean(value: object) -> object:
    return clean_text(value) if isinstance(value, str) else value


def clean_detail(detail: dict[str, object]) -> dict[str, object]:
    """`detail` without secret-looking keys, each string value cleaned (`clean_text`)."""
    return {
        k: _clean(v) for k, v in detail.items() if not any(w in k.lower() for w in _SECRET_WORDS)
    }


@dataclass(slots=True)
class _Tally:
    """One coalesced row: the refusals of one kind from one address in one minute."""

    event: str
    user_id: int | None
    username: str | None
    ip: str | None
    minute: int
    detail: dict[str, object]
    count: int = 1
    stored: int = 0  # how many of `count` have been handed to the writer

    @property
    def key(self) -> str:
        """The row's `tally_key`: the same in every process sharing the database."""
        return f"{self.event}|{self.minute}|{self.ip if self.ip is not None else _OVERFLOW}"


@dataclass(slots=True)
class _Write:
    what: str
    run: Callable[[], Awaitable[Any]]
    done: asyncio.Future[None]


class Auditor:
    """Writes audit events to the database and the `plp.audit` logger (see module docstring)."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        open_max: int = OPEN_MAX,
        queue_max: int = QUEUE_MAX,
        flush_seconds: float = FLUSH_SECONDS,
        wait_max: float = WAIT_MAX,
    ) -> None:
        self.db = db
        self.clock = clock
        self.open_max = open_max
        self.queue_max = queue_max
        self.flush_seconds = flush_seconds
        self.wait_max = wait_max
        # Called with the event name after each record (metrics count logins this way).
        self.listeners: list[Callable[[str], None]] = []
        self.dropped = 0  # writes dropped since start because the queue was full
        self._dropping = 0  # ... in the current episode (logged when the queue drains)
        self._open: dict[Key, _Tally] = {}
        self._flushed_minute = 0  # the minute of the last flush
        self._queue: deque[_Write] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._flusher: asyncio.TimerHandle | None = None
        self._flusher_loop: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def record(
        self,
        event: str,
        *,
        user_id: int | None = None,
        username: str | None = None,
        ip: str | None = None,
        **detail: object,
    ) -> None:
        """Record one event; waits (up to WAIT_MAX) for its row unless it only adds to a count.

        A database failure is logged, never raised to the request.
        """
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}")
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("audit listener failed for %s", event)
        name = clean_text(username) if username is not None else None
        address = clean_text(ip) if ip is not None else None
        clean = clean_detail(detail)
        if event in COALESCED:
            done = self._count(event, user_id, name, address, clean)
        else:
            self._log_line(event, user_id, name, address, clean)
            write = partial(
                self.db.add_audit, event, user_id=user_id, username=name, ip=address, detail=clean
            )
            done = self._enqueue(event, write)
        if done is not None:
            # The row is normally there when the request answers; a slow database delays
            # the request by WAIT_MAX at most, and the writer stores the row later.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), self.wait_max)

    # ------------------------------------------------------------------ coalescing
    def _count(
        self,
        event: str,
        user_id: int | None,
        username: str | None,
        ip: str | None,
        detail: dict[str, object],
    ) -> asyncio.Future[None] | None:
        """Add one refusal to its row; a future for the row's first write if it is new."""
        minute = int(self.clock() // 60)
        key: Key = (event, ip, minute)
        tally = self._open.get(key)
        if tally is None and len(self._open) >= self.open_max and minute > self._flushed_minute:
            self._flush()  # a new minute: close the last one's rows now to make room
        if tally is None and len(self._open) >= self.open_max:
            # Too many addresses at once: further ones share one row per kind and minute.
            key = (event, _OVERFLOW, minute)
            tally = self._open.get(key)
            if tally is None and len(self._open) >= self.open_max + len(COALESCED):
                self._drop(event)
                return None
            user_id, username, ip, detail = None, None, None, {"overflow": True}
        if tally is not None:
            tally.count += 1
            return None
        tally = self._open[key] = _Tally(event, user_id, username, ip, minute, detail)
        self._log_line(event, user_id, username, ip, {**detail, "count": 1})
        self._schedule_flush()
        return self._store(tally)

    def _store(self, tally: _Tally) -> asyncio.Future[None] | None:
        """Queue the refusals not yet handed to the writer; the write's future."""
        delta = tally.count - tally.stored
        tally.stored = tally.count
        done = self._enqueue(tally.event, partial(self._add_tally, tally, delta))
        if done is None:
            tally.stored -= delta  # dropped: the next flush offers them again
        return done

    async def _add_tally(self, tally: _Tally, delta: int) -> None:
        try:
            await self.db.add_audit_tally(
                tally.event,
                user_id=tally.user_id,
                username=tally.username,
                ip=tally.ip,
                detail=tally.detail,
                key=tally.key,
                count=delta,
            )
        except BaseException:
            tally.stored -= delta  # offered again at the next flush if the row is still open
            raise

    def _flush(self, *, final: bool = False) -> None:
        """Hand every new refusal to the writer; close the rows of minutes that are over."""
        minute = self._flushed_minute = int(self.clock() // 60)
        for key, tally in list(self._open.items()):
            if tally.count > tally.stored:
                self._store(tally)
            if final or tally.minute < minute:
                # The queued writes carry everything they need; the tally is not needed.
                del self._open[key]
                if tally.count > 1:
                    detail = {**tally.detail, "count": tally.count}
                    self._log_line(
                        tally.event, tally.user_id, tally.username, tally.ip, detail, summary=True
                    )

    def _schedule_flush(self) -> None:
        loop = asyncio.get_running_loop()
        if self._flusher is None or self._flusher_loop is not loop:
            self._flusher_loop = loop
            self._flusher = loop.call_later(self.flush_seconds, self._tick)

    def _tick(self) -> None:
        self._flusher = None
        self._flush()
        if self._open:
            self._schedule_flush()

    # ------------------------------------------------------------------ writing
    def _enqueue(self, what: str, run: Callable[[], Awaitable[Any]]) -> asyncio.Future[None] | None:
        """Queue a write for the one writer task; None (dropped) when the queue is full."""
        if len(self._queue) >= self.queue_max:
            self._drop(what)
            return None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append(_Write(what, run, done))
        if self._writer is None or self._writer.done() or self._loop is not loop:
            self._loop = loop
            self._writer = loop.create_task(self._write_all())
        return done

    async def _write_all(self) -> None:
        queue = self._queue
        while queue:
            write = queue.popleft()
            try:
                await write.run()
            except StorageUnavailable as exc:
                log.warning("could not store audit event %s: %s", write.what, exc)
            except Exception:
                log.exception("could not store audit event %s", write.what)
            finally:
                if not write.done.done():
                    write.done.set_result(None)
        if self._dropping:
            log.warning("the audit writer caught up; %d audit writes were dropped", self._dropping)
            self._dropping = 0

    def _drop(self, what: str) -> None:
        self.dropped += 1
        if not self._dropping:
            log.warning(
                "audit events arrive faster than the database stores them; dropping %s rows "
                "(and counting) until it catches up",
                what,
            )
        self._dropping += 1

    def _log_line(
        self,
        event: str,
        user_id: int | None,
        username: str | None,
        ip: str | None,
        detail: dict[str, object],
        *,
        summary: bool = False,
    ) -> None:
        line: dict[str, object] = {
            "at": iso(utcnow()),
            "event": event,
            "userId": user_id,
            "username": username,
            "ip": ip,
            "detail": detail,
        }
        if summary:
            line["summary"] = True
        audit_log.info("%s", json.dumps(line, sort_keys=True))

    # ------------------------------------------------------------------ lifecycle
    async def sync(self, *, final: bool = False) -> None:
        """Queue every pending count now and wait until the queue is written.

        `final` also closes every row (at shutdown, when no minute will pass any more).
        """
        for _ in range(2):  # the second round takes refusals counted during the first
            self._flush(final=final)
            writer = self._writer
            current = self._loop is asyncio.get_running_loop()
            if writer is not None and not writer.done() and current:
                await asyncio.shield(writer)

    async def close(self) -> None:
        """Store every count and waiting write; called once at shutdown, before the db closes."""
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        await self.sync(final=True)

    async def prune(self, before: _dt.datetime) -> int:
        """Delete the rows older than `before`, in batches that let requests run between them."""
        removed = 0
        while True:
            batch = await self.db.prune_audit(before, limit=PRUNE_BATCH)
            removed += batch
            if batch < PRUNE_BATCH:
                return removed
            await asyncio.sleep(0)
