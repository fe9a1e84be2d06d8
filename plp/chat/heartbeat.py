"""One heartbeat for every chat socket of a process: pings and the silence limit (SPEC §7).

Tornado's own heartbeat is a Task per socket (a coroutine, its sleep timer and futures) and
plp's silence watchdog was a timer per socket: about 1.5 KiB and two timer (re)arms per
socket. Here every socket is one entry in one of `SLOTS` dicts, and one timer visits a slot
per tick, so each socket is visited once per `visit_period`: it is pinged when its last ping
is `interval` old, and dropped when it has been silent for the limit and left a ping
unanswered (`verdict`). The timer runs only while some socket is open.
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


def visit_period(interval: float, silence: float) -> float:
    """How often each socket is visited for a ping interval and silence limit (seconds).

    At least 4 visits per silence limit, and the ping interval a whole number of visits
    (pings stay `interval` apart); never shorter than SLOTS ticks of MIN_TICK.
    """
    watch = max(silence / 4, SLOTS * MIN_TICK)
    if interval > 0:
        watch = interval / math.ceil(interval / max(min(interval, watch), SLOTS * MIN_TICK))
    return max(watch, SLOTS * MIN_TICK)


def verdict(
    now: float, heard: float, pinged: float, asked: float, interval: float, silence: float
) -> tuple[str, float, float]:
    """("drop" | "ping" | "wait", when last pinged, first unanswered ping) for one visit.

    `heard` is when the peer last sent anything (a pong included); `asked` the time of the
    first ping it has not answered (0: none). A peer is dropped when it has been silent for
    `silence` AND has had `silence - interval` seconds to answer a ping: an event loop too
    busy to ping on time never costs a live peer its socket. Without pings (`interval` 0),
    silence alone drops it.
    """
    if asked and heard >= asked:
        asked = 0.0  # answered
    if now - heard > silence and (interval <= 0 or (asked and now - asked > silence - interval)):
        return "drop", pinged, asked
    if interval > 0 and now - pinged >= interval - visit_period(interval, silence) / 2:
        return "ping", now, asked or now
    return "wait", pinged, asked


class Heartbeat:
    """Visits every socket once per period; `settings` gives the interval and the limit."""

    def __init__(self, settings: Callable[[], tuple[float, float]]) -> None:
        self._settings = settings
        # socket -> (when last pinged, first unanswered ping or 0)
        self._slots: list[dict[Beating, tuple[float, float]]] = [{} for _ in range(SLOTS)]
        self._next_slot = 0
        self._tick_slot = 0
        self._count = 0
        self._timer: object | None = None
        self._loop: IOLoop | None = None

    def __len__(self) -> int:
        return self._count

    def add(self, sock: Beating) -> None:
        if self._timer is None:
            self._loop = IOLoop.current()
        assert self._loop is not None
        slot = self._next_slot
        self._next_slot = (slot + 1) % SLOTS
        sock.beat_slot = slot
        self._slots[slot][sock] = (self._loop.time(), 0.0)
        self._count += 1
        if self._timer is None:
            self._arm()

    def remove(self, sock: Beating) -> None:
        if self._slots[sock.beat_slot].pop(sock, None) is not None:
            self._count -= 1
        if not self._count and self._timer is not None and self._loop is not None:
            self._loop.remove_timeout(self._timer)
            self._timer = None

    def _arm(self) -> None:
        assert self._loop is not None
        period = visit_period(*self._settings())
        self._timer = self._loop.call_later(period / SLOTS, self._tick)

    def _tick(self) -> None:
        self._timer = None
        assert self._loop is not None
        interval, silence = self._settings()
        slot = self._slots[self._tick_slot]
        self._tick_slot = (self._tick_slot + 1) % SLOTS
        now = self._loop.time()
        for sock, (pinged, asked) in list(slot.items()):
            action, pinged, asked = verdict(now, sock.last_heard, pinged, asked, interval, silence)
            slot[sock] = (pinged, asked)
            if action == "wait":
                continue
            try:
                sock.beat(action == "ping", action == "drop")
            except Exception:  # one broken socket must not stop the heartbeat of the others
                log.exception("chat heartbeat failed for one socket")
        if self._count:
            self._arm()
