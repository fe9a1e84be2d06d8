"""Password policy and bcrypt hashing, always off the event loop.

Passwords are pre-hashed with SHA-256 (base64, 44 bytes) before bcrypt, so every character
of a password up to the 256-character limit counts; plain bcrypt reads only 72 bytes and
bcrypt 5 refuses longer input outright.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import gzip
import hashlib
import os
import threading
import unicodedata
from functools import cache
from importlib import resources

import bcrypt

PASSWORD_MIN = 8
PASSWORD_MAX = 256
HASH_PREFIX = "bcrypt_sha256$"
# bcrypt threads run at a lower priority than the event loop, so a burst of logins slows
# other logins, not everyone's chat.
BCRYPT_THREAD_NICE = 10


@cache
def common_passwords() -> frozenset[str]:
    """The 20,000 most common passwords (list from Django, BSD licence), lower-cased."""
    data = resources.files("plp").joinpath("data/common-passwords.txt.gz").read_bytes()
    return frozenset(gzip.decompress(data).decode().split())


def password_problem(password: object, username: str = "") -> str | None:
    """Why a new password is refused, or None when it is acceptable."""
    if not isinstance(password, str):
        return "Password must be a string."
    if len(password) < PASSWORD_MIN:
        return f"Password must be at least {PASSWORD_MIN} characters."
    if len(password) > PASSWORD_MAX:
        return f"Password must be at most {PASSWORD_MAX} characters."
    if "\x00" in password:
        return "Password must not contain NUL characters."
    # Length alone would let nine spaces or "aaaaaaaa" through; both fall to the first guess.
    distinct = set(password.strip())
    if not distinct:
        return "Password must not be only spaces or other blank characters."
    if len(distinct) == 1:
        return "Password must not be one character repeated."
    folded = password.strip().lower()
    if folded in common_passwords():
        return "This password is too common; choose one that is harder to guess."
    if username and folded == username.lower():
        return "Password must not be the same as the username."
    return None


def _prehash(password: str) -> bytes:
    normal = unicodedata.normalize("NFC", password)
    return base64.b64encode(hashlib.sha256(normal.encode("utf-8", "surrogatepass")).digest())


def hash_password(password: str, rounds: int) -> str:
    """A storable hash of password (blocking: call through PasswordHasher)."""
    return HASH_PREFIX + bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode()


def check_password(password: str, stored: str) -> bool:
    """Whether password matches a stored hash (blocking: call through PasswordHasher)."""
    if not stored.startswith(HASH_PREFIX):
        return False
    try:
        return bcrypt.checkpw(_prehash(password), stored[len(HASH_PREFIX) :].encode())
    except ValueError:
        return False


def hash_cost(stored: str) -> int | None:
    """The bcrypt cost (log2 rounds) a stored hash was made with; None if unreadable."""
    if not stored.startswith(HASH_PREFIX):
        return None
    parts = stored[len(HASH_PREFIX) :].split("$")  # "", "2b", "12", salt+digest
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return int(parts[2])


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BCRYPT_THREAD_NICE)
    except (AttributeError, OSError):
        pass


class PasswordHasher:
    """Runs bcrypt in a small pool of low-priority threads; bcrypt releases the GIL."""

    def __init__(self, rounds: int, workers: int = 2) -> None:
        self.rounds = rounds
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="bcrypt", initializer=_lower_priority
        )
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        """Hash a new password."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, hash_password, password, self.rounds)

    async def warm(self) -> None:
        """Make the dummy hash now, so the first unknown-user login costs no more than others."""
        await self._dummy_hash()

    async def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = await self.hash(os.urandom(16).hex())
        return self._dummy

    def needs_rehash(self, stored: str) -> bool:
        """Whether a stored hash was made at another cost than the current `bcrypt-rounds`."""
        return hash_cost(stored) != self.rounds

    async def verify(self, password: str, stored: str | None) -> bool:
        """Check a password; always spend at least one bcrypt check at the current cost.

        With stored=None (unknown user) only a dummy check runs and the answer is False. A
        stored hash cheaper than the current cost (made with lower `bcrypt-rounds`, or
        unreadable) is followed by the same dummy check: otherwise an existing account
        answers faster than an unknown one and response time tells which usernames exist.
        A dearer stored hash cannot be helped before the password is known; sign-in re-makes
        every hash at the current cost (`auth.service.authenticate`).
        """
        if stored is None:
            await self._dummy_check()
            return False
        ok = await self._check(password, stored)
        if (hash_cost(stored) or 0) < self.rounds:
            await self._dummy_check()
        return ok

    async def _check(self, password: str, stored: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, check_password, password, stored)

    async def _dummy_check(self) -> None:
        await self._check("x" * 12, await self._dummy_hash())

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
