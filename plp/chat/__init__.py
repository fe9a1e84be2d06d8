"""Realtime class chat: the hub (fan-out, presence), limits, and the seams (broker, socket
counter, presence) that Redis implementations plug into for several processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import Settings
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
    "make_hub",
]


def make_hub(settings: Settings, *, wire: Callable[[str], Any] | None = None) -> ChatHub:
    """The hub for these settings: in-process delivery (a shared broker plugs in here)."""
    return ChatHub(LocalBroker(), wire=wire)
