"""One heartbeat for every chat socket of a process: pings and the silence limit (SPEC §7).

Tornado's own heartbeat is a Task per socket (a coroutine, its sleep timer and futures) and
plp's silence watchdog was a timer per socket: about 1.5 KiB and two timer (re)arms per
socket. Here every socket is one entry in one of `SLOTS` dicts, and one timer visits a slot
per tick, so each socket is visited once per `period`: a peer heard from not for longer than
the silence limit is dropped, and every `beats`-th visit it is pinged. The timer runs only
while some socket is open.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Protocol

from tornado.ioloop import IOLoop

log = logging.getLogger(__name__)

SLOTS = 32  # a period is spread over this many ticks, so no tick visits every socket
MIN_TICK = 0.005  # seconds; only tests set pings this fast


class Beating(Protocol):
    """What the heartbeat needs of a socket."""

    last_heard: float
    beat_slot: int

    def beat(self, ping: bool, silent: bool) -> None:
        """Ping the peer (`ping`), or drop it (`silent`)."""


def timing(interval: float, silence: float) -> tuple[float, int]:
    """(period of one visit round, visits per ping) for a ping interval and silence limit.

    Each socket is visited at least 4 times per silence limit (dropped at most a quarter of
    it late) and the ping interval is a whole number of visits (pings stay `interval` apart);
    an interval of 0 sends no pings (0 visits per ping).
    """
    watch = max(silence / 4, SLOTS * MIN_TICK)
    if interval <= 0:
        return watch, 0
    watch = max(min(interval, watch), SLOTS * MIN_TICK)
    beats = max(1, math.ceil(interval / watch))
    return max(interval / beats, SLOTS * MIN_TICK), beats


class Heartbeat:
    """Visits every socket once per period; `settings` gives the interval and the limit."""

    def __init__(self, settings: Callable[[], tuple[float, float]]) -> None:
        self._settings = settings
        self._slots: list[dict[Beating, int]] = [{} for _ in range(SLOTS)]
        self._next_slot = 0
        self._tick_slot = 0
        self._count = 0
        self._timer: object | None = None
        self._loop: IOLoop | None = None

    def __len__(self) -> int:
        return self._count

    def add(self, sock: Beating) -> None:
        slot = self._next_slot
        self._next_slot = (slot + 1) % SLOTS
        sock.beat_slot = slot
        self._slots[slot][sock] = 0
        self._count += 1
        if self._timer is None:
            self._loop = IOLoop.current()
            self._arm()

    def remove(self, sock: Beating) -> None:
        if self._slots[sock.beat_slot].pop(sock, None) is not None:
            self._count -= 1
        if not self._count and self._timer is not None and self._loop is not None:
            self._loop.remove_timeout(self._timer)
            self._timer = None

    def _arm(self) -> None:
        assert self._loop is not None
        period, _ = timing(*self._settings())
        self._timer = self._loop.call_later(period / SLOTS, self._tick)

    def _tick(self) -> None:
        self._timer = None
        assert self._loop is not None
        interval, silence = self._settings()
        _, beats = timing(interval, silence)
        slot = self._slots[self._tick_slot]
        self._tick_slot = (self._tick_slot + 1) % SLOTS
        now = self._loop.time()
        for sock, count in list(slot.items()):
            count += 1
            slot[sock] = count
            try:
                sock.beat(beats > 0 and count % beats == 0, now - sock.last_heard > silence)
            except Exception:  # one broken socket must not stop the heartbeat of the others
                log.exception("chat heartbeat failed for one socket")
        if self._count:
            self._arm()
