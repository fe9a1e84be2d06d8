"""Presence: who is online in each channel, and the `presence` events when that changes.

`LocalPresence` is this process's own counts (one process); `plp.redis.shared.RedisPresence`
decides across processes. Presence sees its hub only as a `PresenceHub`, so this module does
not depend on the hub.
"""

from __future__ import annotations

import abc
from typing import Any, Protocol


class PresenceHub(Protocol):
    """What presence uses of this process's chat hub."""

    closing: bool

    def publish(
        self, channel_id: int, event: dict[str, Any], *, exclude: str | None = None
    ) -> None:
        """Send an event to everyone in the channel, in every process."""

    def online(self, channel_id: int, *, exclude_user: int | None = None) -> list[dict[str, Any]]:
        """The users with a connection in the channel in this process."""

    def present_users(self) -> dict[int, list[dict[str, Any]]]:
        """Channel -> the users with a connection in it in this process."""


class Presence(abc.ABC):
    """Who is online in each channel, and the `presence` events when that changes.

    The hub counts its own connections per channel and user, and calls `arrived` when a
    user's first connection here joins a channel and `departed` when their last one here
    leaves it; an implementation decides whether that changes anything for everyone.
    """

    hub: PresenceHub

    def bind(self, hub: PresenceHub) -> None:
        """Attach the hub whose connections are counted."""
        self.hub = hub

    @abc.abstractmethod
    def arrived(self, channel_id: int, user: dict[str, Any], conn_id: str) -> None:
        """The user's first connection in this process joined the channel."""

    @abc.abstractmethod
    def departed(self, channel_id: int, user: dict[str, Any], *, announce: bool = True) -> None:
        """The user's last connection in this process left the channel (or it was deleted)."""

    @abc.abstractmethod
    async def others(self, channel_id: int, user_id: int) -> list[dict[str, Any]]:
        """Users online in the channel, but `user_id`; one public-user dict each."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Begin (shared presence: register this process)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Withdraw this process's users (shared presence) and release connections."""


class LocalPresence(Presence):
    """One process: presence is this hub's own counts, events go out through the broker."""

    def arrived(self, channel_id: int, user: dict[str, Any], conn_id: str) -> None:
        self.hub.publish(
            channel_id,
            {"type": "presence", "channel": channel_id, "user": user, "status": "online"},
            exclude=conn_id,
        )

    def departed(self, channel_id: int, user: dict[str, Any], *, announce: bool = True) -> None:
        if announce and not self.hub.closing:
            self.hub.publish(
                channel_id,
                {"type": "presence", "channel": channel_id, "user": user, "status": "offline"},
            )

    async def others(self, channel_id: int, user_id: int) -> list[dict[str, Any]]:
        return self.hub.online(channel_id, exclude_user=user_id)
