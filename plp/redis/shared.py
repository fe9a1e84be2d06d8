"""Socket caps and presence across processes, on top of a `RedisNode` (see node.py).

The chat hub sees these as its `SocketCounter` and `Presence` seams; each keeps this node's
own truth in memory (so a resync can rewrite it) and sends every change through the node's
ordered queue of Lua scripts.
"""

from __future__ import annotations

import json
from typing import Any

from ..chat.hub import ChatHub, dumps
from ..chat.presence import Presence
from ..chat.sockets import MemorySocketCounter
from .client import DEFAULT_PREFIX
from .node import RedisNode


class RedisSocketCounter(MemorySocketCounter):
    """Socket caps counted in Redis across nodes; local counts are this node's truth."""

    def __init__(self, node: RedisNode) -> None:
        super().__init__()
        self.node = node
        node.sockets = self

    @staticmethod
    def _keys(user_id: int, address: str) -> tuple[str, str]:
        return f"ws:u:{user_id}", f"ws:a:{address}"

    async def acquire(
        self, conn_id: str, user_id: int, address: str, per_user: int, per_address: int
    ) -> str | None:
        ukey, akey = self._keys(user_id, address)

        def admitted(result: Any) -> None:
            if result == "":
                self.record(conn_id, user_id, address)

        result = await self.node.call(
            "acquire", ukey, akey, per_user, per_address, on_success=admitted
        )
        return result or None

    def release(self, conn_id: str) -> None:
        slot = self.forget(conn_id)
        if slot is not None:
            self.node.submit("release", *self._keys(*slot))

    def truth(self) -> dict[str, int]:
        """This node's socket counts by key (without the prefix), for a resync."""
        counts: dict[str, int] = {}
        for user_id, n in self.by_user.items():
            counts[f"ws:u:{user_id}"] = n
        for address, n in self.by_address.items():
            counts[f"ws:a:{address}"] = n
        return counts

    async def start(self) -> None:
        await self.node.start()

    async def close(self) -> None:
        await self.node.close()


class RedisPresence(Presence):
    """Presence across nodes: Redis decides first/last socket anywhere and announces it."""

    def __init__(self, node: RedisNode) -> None:
        self.node = node
        node.presence = self

    def arrived(self, channel_id: int, user: dict[str, Any], conn_id: str) -> None:
        self.node.submit("pr_add", channel_id, user["id"], dumps(user), conn_id)

    def departed(self, channel_id: int, user: dict[str, Any], *, announce: bool = True) -> None:
        if self.hub.closing:
            return  # close() withdraws the whole node in one script
        self.node.submit("pr_remove", channel_id, user["id"], "1" if announce else "0")

    async def others(self, channel_id: int, user_id: int) -> list[dict[str, Any]]:
        rows = await self.node.call("pr_list", channel_id)
        users = []
        for row in rows or ():
            try:
                user = json.loads(row)
            except ValueError:
                continue
            if isinstance(user, dict) and user.get("id") != user_id:
                users.append(user)
        return users

    def truth(self) -> list[list[Any]]:
        """[channel, user id, user JSON] for every user with a socket here, for a resync."""
        hub: ChatHub = self.hub
        rows: list[list[Any]] = []
        for channel_id, users in hub.present_users().items():
            for user in users:
                rows.append([str(channel_id), str(user["id"]), dumps(user)])
        return rows

    async def start(self) -> None:
        await self.node.start()

    async def close(self) -> None:
        await self.node.close()


def make_shared(url: str, *, prefix: str = DEFAULT_PREFIX) -> tuple[RedisSocketCounter, Presence]:
    """The socket counter and presence of one node on this Redis."""
    node = RedisNode(url, prefix=prefix)
    return RedisSocketCounter(node), RedisPresence(node)
