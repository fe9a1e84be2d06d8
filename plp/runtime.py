"""Process-wide tuning of the Python runtime for a long-running server."""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections (Python's default: 700)


def settle_memory() -> None:
    """Move everything made while starting out of the garbage collector's view, and collect
    the young generation less often.

    Modules, routes, templates and settings live as long as the process; with them frozen
    (`gc.freeze`) a full collection walks only what requests and sockets made. Each request
    and socket allocates hundreds of objects, so the default young threshold (700) ran a
    collection every few requests; profiles of connects spent a third of the CPU in it.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
