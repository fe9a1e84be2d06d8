"""The session store alone, in-process: memory per session and the cost of one prune.

`python bench/store_bench.py SESSIONS EXPIRED` fills a `MemorySessionStore` through its public
`create` with SESSIONS sessions, of which the EXPIRED oldest are idle past the timeout, then
prints one JSON object: RSS per session, the event-loop time of the prune that removes the
expired ones, and the mean time of a `get`. Run it in a fresh process so RSS is its own.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time

from plp.sessions.memory import MemorySessionStore

IDLE = 1800.0
MAX_AGE = 86400.0


class Clock:
    """A clock the benchmark moves by hand, so expiry needs no waiting."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def rss_bytes() -> int:
    """This process's resident set size."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def run(total: int, expired: int) -> dict[str, float]:
    clock = Clock()
    store = MemorySessionStore(idle_timeout=IDLE, max_age=MAX_AGE, per_user=10, clock=clock)
    # Realistic shapes: 10 sessions per user, one browser string shared by many, and a
    # distinct address string per session (the worst case for memory).
    agents = [f"Mozilla/5.0 (bench browser {i}) Gecko/20100101 Firefox/128.0" for i in range(20)]
    gc.collect()
    before = rss_bytes()
    tokens: list[str] = []
    started = time.perf_counter()
    for i in range(total):
        if i == expired:
            clock.now += 100.0  # the rest are younger than the expired ones
        ip = f"198.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        token, _ = await store.create(i // 10, ip=ip, user_agent=agents[i % 20])
        if i % 1000 == 0:
            tokens.append(token)
    create_s = time.perf_counter() - started
    gc.collect()
    per_session = (rss_bytes() - before) / total
    # Lookups of live sessions (mean), at the current time.
    live_tokens = [t for j, t in enumerate(tokens) if j * 1000 >= expired][:1000]
    started = time.perf_counter()
    for token in live_tokens:
        assert await store.get(token) is not None
    get_us = (time.perf_counter() - started) / max(1, len(live_tokens)) * 1e6
    # Move past the idle timeout of the oldest EXPIRED sessions only, then prune once.
    clock.now += IDLE - 50.0
    gc.collect()
    started = time.perf_counter()
    removed = await store.prune_expired()
    prune_ms = (time.perf_counter() - started) * 1000
    assert removed == expired, (removed, expired)
    assert await store.count() == total - expired
    return {
        "sessions": total,
        "expired": expired,
        "bytes_per_session": per_session,
        "create_us": create_s / total * 1e6,
        "get_us": get_us,
        "prune_ms": prune_ms,
        "removed": removed,
    }


if __name__ == "__main__":
    result = asyncio.run(run(int(sys.argv[1]), int(sys.argv[2])))
    print(json.dumps(result))
