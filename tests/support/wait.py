"""Waiting on events: poll a condition until it holds, never sleep a guessed time.

The timeout only bounds a hang (the machine is shared and noisy); it is never an assertion
about speed. A failed wait is an AssertionError naming what was awaited.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

WAIT = 20.0  # seconds: generous, only how long we are willing to poll
ASYNC_INTERVAL = 0.02
BLOCKING_INTERVAL = 0.05


async def wait_until(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = WAIT,
    what: str = "the condition",
    interval: float = ASYNC_INTERVAL,
) -> Any:
    """Await until `predicate()` (plain or async) returns something truthy; that value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)  # pacing of the poll, not a guess at how long


def wait_until_blocking(
    predicate: Callable[[], Any],
    timeout: float = WAIT,
    what: str = "the condition",
    interval: float = BLOCKING_INTERVAL,
) -> Any:
    """`wait_until` for plain (non-async) tests: blocks the thread between polls."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(interval)  # pacing of the poll, not a guess at how long
