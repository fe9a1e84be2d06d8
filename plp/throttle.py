"""Abuse limits for login and registration (SPEC §9), behind an interface like the store.

Per account: after `account_limit` consecutive failures the account is blocked for 30 s,
doubling per further failure up to 15 min; attempts while blocked are refused without a
password check and do not extend the block; success resets. Per address: at most
`address_limit` failed logins in any 5 minutes, and `registration_limit` registrations an hour.
Successful logins never count against an address, so a class behind one NAT can sign in.
Per user: at most `join_limit` wrong class join codes an hour (SPEC §12), so codes cannot be
guessed. Per address: at most `challenge_limit` passkey sign-in challenges a minute: anyone
may ask for one, and each is kept for 5 minutes in a bounded store (plp/pending.py) where a
flood from one address would push out everyone else's.
"""

from __future__ import annotations

import abc
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BASE_BLOCK = 30.0
MAX_BLOCK = 15 * 60.0
ADDRESS_WINDOW = 5 * 60.0
REGISTRATION_WINDOW = 60 * 60.0
JOIN_WINDOW = 60 * 60.0
DEFAULT_JOIN_LIMIT = 10
CHALLENGE_WINDOW = 60.0
# A school's staff may share one address behind NAT; a flood is thousands a second.
DEFAULT_CHALLENGE_LIMIT = 60


def block_seconds(failures: int, account_limit: int) -> float:
    """How long an account with this many consecutive failures stays blocked (0: not)."""
    if failures < account_limit:
        return 0.0
    return min(BASE_BLOCK * 2 ** min(failures - account_limit, 16), MAX_BLOCK)


class Throttle(abc.ABC):
    """Counters for failed logins and registrations."""

    def __init__(
        self,
        *,
        account_limit: int,
        address_limit: int,
        registration_limit: int,
        join_limit: int = DEFAULT_JOIN_LIMIT,
        challenge_limit: int = DEFAULT_CHALLENGE_LIMIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account_limit = account_limit
        self.address_limit = address_limit
        self.registration_limit = registration_limit
        self.join_limit = join_limit
        self.challenge_limit = challenge_limit
        self.clock = clock

    @abc.abstractmethod
    async def login_wait(self, username: str, ip: str) -> tuple[float, str]:
        """Seconds a login must wait (0: go ahead) and which limit applies ('account'|'address')."""

    @abc.abstractmethod
    async def login_failed(self, username: str, ip: str) -> None:
        """Count one failed login against the account and the address."""

    @abc.abstractmethod
    async def login_succeeded(self, username: str) -> None:
        """Reset the account's consecutive failures."""

    @abc.abstractmethod
    async def address_wait(self, ip: str) -> float:
        """Seconds until the address may try again under the per-address limit alone (0: now).

        For guesses that count like failed logins but name no account's back-off (reset codes).
        """

    @abc.abstractmethod
    async def address_failed(self, ip: str) -> None:
        """Count one failure against the address only (a wrong reset code)."""

    @abc.abstractmethod
    async def registration_wait(self, ip: str) -> float:
        """Seconds until this address may register again (0: now)."""

    @abc.abstractmethod
    async def registered(self, ip: str) -> None:
        """Count one registration from the address."""

    @abc.abstractmethod
    async def join_wait(self, user_id: int) -> float:
        """Seconds until this user may try a class join code again (0: now)."""

    @abc.abstractmethod
    async def challenge_wait(self, ip: str) -> float:
        """Seconds before the address may have another passkey sign-in challenge (0: now)."""

    @abc.abstractmethod
    async def challenge_made(self, ip: str) -> None:
        """Count one passkey sign-in challenge for the address."""

    @abc.abstractmethod
    async def join_failed(self, user_id: int) -> None:
        """Count one wrong class join code against the user."""

    async def prune(self) -> int:
        """Forget state that no longer limits anyone; return how many entries went."""
        return 0

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect before serving (a shared throttle); nothing to do in memory."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


@dataclass(slots=True)
class _Account:
    failures: int
    last_failure: float


class MemoryThrottle(Throttle):
    """`Throttle` in this process's memory."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._accounts: dict[str, _Account] = {}
        self._address_failures: dict[str, deque[float]] = {}
        self._registrations: dict[str, deque[float]] = {}
        self._join_failures: dict[int, deque[float]] = {}
        self._challenges: dict[str, deque[float]] = {}

    @staticmethod
    def _window_wait(events: deque[float] | None, limit: int, window: float, now: float) -> float:
        if not events:
            return 0.0
        while events and events[0] <= now - window:
            events.popleft()
        if len(events) < limit:
            return 0.0
        return max(events[-limit] + window - now, 0.001)

    async def login_wait(self, username: str, ip: str) -> tuple[float, str]:
        now = self.clock()
        account = self._accounts.get(username)
        if account is not None:
            wait = account.last_failure + block_seconds(account.failures, self.account_limit)
            if wait > now:
                return wait - now, "account"
        wait = self._window_wait(
            self._address_failures.get(ip), self.address_limit, ADDRESS_WINDOW, now
        )
        return (wait, "address") if wait else (0.0, "")

    async def login_failed(self, username: str, ip: str) -> None:
        now = self.clock()
        account = self._accounts.get(username)
        if account is None:
            self._accounts[username] = _Account(1, now)
        else:
            account.failures += 1
            account.last_failure = now
        events = self._address_failures.setdefault(ip, deque(maxlen=self.address_limit))
        events.append(now)

    async def login_succeeded(self, username: str) -> None:
        self._accounts.pop(username, None)

    async def address_wait(self, ip: str) -> float:
        return self._window_wait(
            self._address_failures.get(ip), self.address_limit, ADDRESS_WINDOW, self.clock()
        )

    async def address_failed(self, ip: str) -> None:
        events = self._address_failures.setdefault(ip, deque(maxlen=self.address_limit))
        events.append(self.clock())

    async def registration_wait(self, ip: str) -> float:
        return self._window_wait(
            self._registrations.get(ip), self.registration_limit, REGISTRATION_WINDOW, self.clock()
        )

    async def registered(self, ip: str) -> None:
        events = self._registrations.setdefault(ip, deque(maxlen=self.registration_limit))
        events.append(self.clock())

    async def join_wait(self, user_id: int) -> float:
        return self._window_wait(
            self._join_failures.get(user_id), self.join_limit, JOIN_WINDOW, self.clock()
        )

    async def join_failed(self, user_id: int) -> None:
        events = self._join_failures.setdefault(user_id, deque(maxlen=self.join_limit))
        events.append(self.clock())

    async def challenge_wait(self, ip: str) -> float:
        return self._window_wait(
            self._challenges.get(ip), self.challenge_limit, CHALLENGE_WINDOW, self.clock()
        )

    async def challenge_made(self, ip: str) -> None:
        events = self._challenges.setdefault(ip, deque(maxlen=self.challenge_limit))
        events.append(self.clock())

    async def prune(self) -> int:
        now = self.clock()
        gone = 0
        # An account is forgotten once it is unblocked and a full max block has passed, so a
        # slow guesser cannot reset the back-off just by waiting for the pruner.
        for name, account in list(self._accounts.items()):
            if now - account.last_failure > MAX_BLOCK + block_seconds(
                account.failures, self.account_limit
            ):
                del self._accounts[name]
                gone += 1
        tables: tuple[tuple[dict[Any, deque[float]], float], ...] = (
            (self._address_failures, ADDRESS_WINDOW),
            (self._registrations, REGISTRATION_WINDOW),
            (self._join_failures, JOIN_WINDOW),
            (self._challenges, CHALLENGE_WINDOW),
        )
        for table, window in tables:
            for key, events in list(table.items()):
                if not events or events[-1] <= now - window:
                    del table[key]
                    gone += 1
        return gone
