"""Helpers shared by the tests (plain modules, no tests here; fixtures are in tests/conftest.py).

The everyday names are importable from `tests.support` itself; the rest from their module:

- `client`: the test secret and password, a clock, a cookie-keeping client for the served app
- `live`: a real `python run.py` process (`LiveServer`), free ports, CI-aware skips, Chromium
- `wait`: `wait_until` / `wait_until_blocking`, waiting on an event instead of sleeping
- `web`: synchronous HTTP and chat clients for a live process, `run_plp`, a metrics scrape
- `multiproc`: async HTTP and chat helpers for tests that run several live processes
- `backends`: the real test Redis and PostgreSQL, and a private redis-server
- `headers`: checks of the security headers
- `hygiene`: the pytest plugin that checks log hygiene over the whole run
"""

from __future__ import annotations

from tests.support.client import (
    PASSWORD,
    TEST_SECRET,
    Client,
    Clock,
    body,
    signed_in,
    visible_text,
)
from tests.support.live import (
    LIVE_SECRET,
    ROOT,
    LiveServer,
    PageProblems,
    chromium_available,
    free_port,
    in_ci,
    launch_browser,
    need,
)
from tests.support.wait import wait_until, wait_until_blocking

__all__ = [
    "LIVE_SECRET",
    "PASSWORD",
    "ROOT",
    "TEST_SECRET",
    "Client",
    "Clock",
    "LiveServer",
    "PageProblems",
    "body",
    "chromium_available",
    "free_port",
    "in_ci",
    "launch_browser",
    "need",
    "signed_in",
    "visible_text",
    "wait_until",
    "wait_until_blocking",
]
