"""Realtime class chat: the hub (fan-out, presence), limits and the broker seam."""

from __future__ import annotations

from ..config import Settings
from .hub import Broker, ChatHub, LocalBroker, Subscriber

__all__ = ["Broker", "ChatHub", "LocalBroker", "Subscriber", "make_hub"]


def make_hub(settings: Settings, **kwargs: object) -> ChatHub:
    """The hub for these settings; in-process delivery (a shared broker plugs in here)."""
    return ChatHub(LocalBroker(), **kwargs)  # type: ignore[arg-type]
