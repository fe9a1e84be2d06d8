"""The broker seam: how hub events reach the hubs of every plp process.

`LocalBroker` delivers in this process (one process); `plp.redis.broker.RedisBroker` carries
events between processes over Redis pub/sub. A broker sees its hub only as a `BrokerHub`,
the deliveries below, so this module does not depend on the hub.
"""

from __future__ import annotations

import abc
from typing import Protocol


class BrokerHub(Protocol):
    """What a broker hands deliveries to: this process's chat hub."""

    def deliver(self, channel_id: int, frame: str, exclude: str | None = None) -> int:
        """Send a frame to this process's subscribers of a channel."""

    def drop_channel(self, channel_id: int, frame: str) -> None:
        """Send a frame to a channel's subscribers here, then unsubscribe them."""

    def close_session(self, key: str) -> int:
        """Close this process's sockets of a session."""

    def drop_member(self, channel_id: int, user_id: int, frame: str) -> int:
        """Send a frame to one user's subscribers of a channel here, then unsubscribe them."""


class Broker(abc.ABC):
    """Carries hub events between processes; every process's hub receives them."""

    hub: BrokerHub

    def bind(self, hub: BrokerHub) -> None:
        """Attach the hub that receives this process's deliveries."""
        self.hub = hub

    @abc.abstractmethod
    def publish(self, channel_id: int, frame: str, exclude: str | None) -> None:
        """Deliver `frame` to the channel's subscribers everywhere but connection `exclude`."""

    @abc.abstractmethod
    def channel_deleted(self, channel_id: int, frame: str) -> None:
        """Everywhere: send `frame` to the channel's subscribers, then drop them from it."""

    @abc.abstractmethod
    def end_session(self, key: str) -> None:
        """Everywhere: close the sockets of session `key` with 4001."""

    def revoke(self, channel_id: int, user_id: int, frame: str) -> None:
        """Everywhere: send `frame` to the user's subscribers of the channel, then drop them
        from it. Here: this process only; a shared broker overrides it."""
        self.hub.drop_member(channel_id, user_id, frame)

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Begin receiving from other processes."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class LocalBroker(Broker):
    """A single process: every call is a direct delivery to this process's hub."""

    def publish(self, channel_id: int, frame: str, exclude: str | None) -> None:
        self.hub.deliver(channel_id, frame, exclude)

    def channel_deleted(self, channel_id: int, frame: str) -> None:
        self.hub.drop_channel(channel_id, frame)

    def end_session(self, key: str) -> None:
        self.hub.close_session(key)
