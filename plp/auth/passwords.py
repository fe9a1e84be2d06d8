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
        if self._dummy is None:
            self._dummy = await self.hash(os.urandom(16).hex())

    async def verify(self, password: str, stored: str | None) -> bool:
        """Check a password; with stored=None, spend the same bcrypt time and return False.

        The dummy check makes an unknown username cost what a wrong password costs, so
        response time does not reveal which usernames exist.
        """
        loop = asyncio.get_running_loop()
        if stored is None:
            await self.warm()
            await loop.run_in_executor(self._pool, check_password, "x" * 12, self._dummy)
            return False
        return await loop.run_in_executor(self._pool, check_password, password, stored)

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
