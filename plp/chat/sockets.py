"""The socket caps: a slot per open chat socket, counted per user and per client address.

`MemorySocketCounter` counts in this process (one process);
`plp.redis.shared.RedisSocketCounter` counts in Redis so the caps hold across processes.
"""

from __future__ import annotations

import abc


class SocketCounter(abc.ABC):
    """Admission for the socket caps: a slot per open socket, per user and per address."""

    @abc.abstractmethod
    async def acquire(
        self, conn_id: str, user_id: int, address: str, per_user: int, per_address: int
    ) -> str | None:
        """Take a slot for `conn_id`; None, or why it is refused ('user', 'address').

        Raises SessionStoreUnavailable when a shared counter cannot be reached.
        """

    @abc.abstractmethod
    def release(self, conn_id: str) -> None:
        """Give back the slot of `conn_id` (no-op if it holds none); never raises."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Begin (shared counters: register this process)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release every slot of this process and connections."""


class MemorySocketCounter(SocketCounter):
    """Counts in this process only (session-backend memory: there is only one process)."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[int, str]] = {}
        self.by_user: dict[int, int] = {}
        self.by_address: dict[str, int] = {}

    def refusal(self, user_id: int, address: str, per_user: int, per_address: int) -> str | None:
        """Why this process's own counts refuse another socket, or None."""
        if self.by_user.get(user_id, 0) >= per_user:
            return "user"
        if self.by_address.get(address, 0) >= per_address:
            return "address"
        return None

    async def acquire(
        self, conn_id: str, user_id: int, address: str, per_user: int, per_address: int
    ) -> str | None:
        why = self.refusal(user_id, address, per_user, per_address)
        if why is None:
            self.record(conn_id, user_id, address)
        return why

    def record(self, conn_id: str, user_id: int, address: str) -> None:
        """Count a slot as held here."""
        if conn_id in self.held:
            return
        self.held[conn_id] = (user_id, address)
        self.by_user[user_id] = self.by_user.get(user_id, 0) + 1
        self.by_address[address] = self.by_address.get(address, 0) + 1

    def forget(self, conn_id: str) -> tuple[int, str] | None:
        """Stop counting a slot here; what it was (user id, address), or None."""
        slot = self.held.pop(conn_id, None)
        if slot is None:
            return None
        for table, key in ((self.by_user, slot[0]), (self.by_address, slot[1])):
            left = table.get(key, 0) - 1
            if left > 0:
                table[key] = left
            else:
                table.pop(key, None)
        return slot

    def release(self, conn_id: str) -> None:
        self.forget(conn_id)
