"""Per-connection chat limits: a token bucket for sends and a window of refused frames.

Both take the clock as an argument so tests drive them with the injectable clock instead of
sleeping; a clock that steps backwards is treated as no time passing.
"""

from __future__ import annotations

from collections import deque


class TokenBucket:
    """`capacity` tokens, refilled continuously at capacity/period per second."""

    __slots__ = ("capacity", "rate", "tokens", "stamp")

    def __init__(self, capacity: int, period: float, now: float) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / period
        self.tokens = float(capacity)
        self.stamp = now

    def take(self, now: float) -> bool:
        """Take one token if there is one; False means over the rate."""
        elapsed = max(0.0, now - self.stamp)
        self.stamp = max(self.stamp, now)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RefusalWindow:
    """Counts refused frames in a sliding window; `add` says when the limit is passed."""

    __slots__ = ("limit", "window", "events")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.events: deque[float] = deque()

    def add(self, now: float) -> bool:
        """Record one refusal; True when more than `limit` fell within the window."""
        events = self.events
        events.append(now)
        while events and events[0] <= now - self.window:
            events.popleft()
        return len(events) > self.limit
