"""The idle-connection limit as one sweep, not a timer per request.

Tornado's `idle_connection_timeout` wraps every wait for a request's headers in
`gen.with_timeout`: a timer armed and cancelled, a future and its callbacks for every
request (about 5 % of a signed-in API request). Here each HTTP connection notes when it
began waiting for headers, and one timer every `SWEEP_EVERY` seconds closes those that have
waited longer than the limit: a keep-alive connection left idle, or a client sending its
headers byte by byte (slow loris), is closed between `limit` and `limit + SWEEP_EVERY`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from tornado.ioloop import PeriodicCallback

log = logging.getLogger(__name__)

SWEEP_EVERY = 10.0  # seconds
# Set on Tornado's HTTP1ServerConnection: when it began waiting for a request's headers,
# None while it answers a request (unset before its first request and once it is closing).
ATTR = "plp_waiting_since"


def waiting(server_conn: Any) -> None:
    """`server_conn` has begun waiting for a request's headers."""
    setattr(server_conn, ATTR, time.monotonic())


def arrived(server_conn: Any) -> None:
    """The headers it waited for have arrived."""
    if server_conn is not None:
        setattr(server_conn, ATTR, None)


def answering(connections: Iterable[Any]) -> int:
    """How many of `connections` are answering a request: their headers arrived and they
    have not yet begun waiting for the next one."""
    return sum(1 for conn in connections if getattr(conn, ATTR, 0) is None)


def overdue(connections: Iterable[Any], now: float, limit: float) -> list[Any]:
    """The connections that have waited longer than `limit` for headers."""
    late = []
    for conn in connections:
        since = getattr(conn, ATTR, None)
        if since is not None and now - since > limit:
            late.append(conn)
    return late


class IdleSweep:
    """Every `every` seconds, closes the connections of `connections()` overdue by `limit`."""

    def __init__(self, connections: Any, limit: float, every: float = SWEEP_EVERY) -> None:
        self.connections = connections
        self.limit = limit
        self.every = every
        self._timer: PeriodicCallback | None = None

    def start(self) -> None:
        if self._timer is None:
            self._timer = PeriodicCallback(self.sweep, self.every * 1000)
            self._timer.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def sweep(self) -> int:
        """Close the overdue connections now; how many."""
        late = overdue(list(self.connections()), time.monotonic(), self.limit)
        for conn in late:
            delattr(conn, ATTR)  # neither waiting nor answering: closing
            stream = getattr(conn, "stream", None)
            if stream is not None:
                stream.close()  # its read of the headers ends as if the client hung up
        if late:
            log.debug("closed %d connections idle for over %.0f s", len(late), self.limit)
        return len(late)
