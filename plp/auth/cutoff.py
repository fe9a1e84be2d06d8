"""Ending sessions a password reset cut off, in a process that did not make the reset.

A reset writes the user's `sessions_from` cut-off in the database (the command line
included: `create-user --reset`). Every request compares it with its session's start
(`sessions.base.end_reason`, read with the user record on each HTTP request and chat send),
so HTTP is refused at once. Open chat sockets may send nothing for a long time, so this
watcher also polls the database every `POLL_SECONDS` for cut-offs newer than the last it saw
and ends the sessions they cut off in this process's store; the store's end listeners close
their sockets with 4001. With the memory session backend that is the only way a reset made
by another program reaches this process's sessions.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tornado.ioloop import PeriodicCallback

from ..sessions.base import END_PASSWORD, SessionStoreUnavailable
from ..storage.base import StorageUnavailable

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)

# One indexed query per interval (users_by_sessions_from): sockets close within about this.
POLL_SECONDS = 1.0


class CutoffWatcher:
    """Ends this process's sessions that began before a newly written cut-off."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.seen = 0.0
        self._failing = False  # one log line per outage, not one per poll
        self._timer: PeriodicCallback | None = None

    async def start(self) -> None:
        """Remember the latest cut-off already written, then poll for newer ones."""
        self.seen = await self.ctx.db.latest_sessions_cut()
        self._timer = PeriodicCallback(self.poll, POLL_SECONDS * 1000)
        self._timer.start()

    def stop(self) -> None:
        """Stop polling."""
        if self._timer is not None:
            self._timer.stop()

    async def poll(self) -> int:
        """End the sessions cut off since the last poll; how many ended."""
        try:
            cuts = await self.ctx.db.sessions_cut_since(self.seen)
            ended = 0
            for user_id, moment in cuts:
                ended += await self.end_before(user_id, moment)
                self.seen = max(self.seen, moment)
        except (StorageUnavailable, SessionStoreUnavailable) as exc:
            if not self._failing:
                log.warning("session cut-off checks failing (retried each second): %s", exc)
            self._failing = True
            return 0
        if self._failing:
            log.info("session cut-off checks work again")
            self._failing = False
        if ended:
            log.info("ended %d sessions cut off by a password reset", ended)
        return ended

    async def end_before(self, user_id: int, moment: float) -> int:
        """End the user's sessions that began before `moment` (Unix seconds)."""
        store = self.ctx.store
        ended = 0
        for session in await store.list_for_user(user_id):
            if session.created_at < moment and await store.end(session.key, END_PASSWORD):
                ended += 1
        return ended
