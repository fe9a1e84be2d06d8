"""Realtime class chat: the hub (fan-out, presence), limits, and the seams (broker, socket
counter, presence) that the Redis implementations in plp/redis plug into for several
processes (plp/context.py picks them)."""

from __future__ import annotations

from .hub import (
    Broker,
    ChatHub,
    LocalBroker,
    LocalPresence,
    MemorySocketCounter,
    Presence,
    SocketCounter,
    Subscriber,
)

__all__ = [
    "Broker",
    "ChatHub",
    "LocalBroker",
    "LocalPresence",
    "MemorySocketCounter",
    "Presence",
    "SocketCounter",
    "Subscriber",
]
