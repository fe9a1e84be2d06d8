"""Realtime class chat, without Tornado: the protocol of one connection (connection.py), the
hub (fan-out, presence counts), limits, and the seams (broker.py, sockets.py, presence.py)
that the Redis implementations in plp/redis plug into for several processes (plp/context.py
picks them)."""

from __future__ import annotations

from .broker import Broker, LocalBroker
from .hub import ChatHub, Subscriber
from .presence import LocalPresence, Presence
from .sockets import MemorySocketCounter, SocketCounter

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
