"""Passkey records (WebAuthn credentials, SPEC §14) and the `PasskeyStore` interface.

A passkey row holds only public material: the credential id and the COSE public key (both
base64url text), the authenticator's sign count and transports, and the name its owner gave
it. Each user also has one stable, random WebAuthn user handle (never the username), which
every passkey they register carries and a discoverable sign-in returns.
"""

from __future__ import annotations

import abc
import datetime as _dt
from dataclasses import dataclass

from .base import StorageError, iso


class PasskeyTaken(StorageError):
    """A passkey with that credential id is registered already (to this or another user)."""


@dataclass(frozen=True, slots=True)
class Passkey:
    """A registered passkey: public key material and its owner's name for it."""

    id: int
    user_id: int
    credential_id: str
    public_key: str
    sign_count: int
    transports: tuple[str, ...]
    name: str
    created_at: _dt.datetime
    last_used_at: _dt.datetime | None

    def to_json(self) -> dict:
        """The passkey as its owner sees it (no key material)."""
        return {
            "id": self.id,
            "name": self.name,
            "createdAt": iso(self.created_at),
            "lastUsedAt": iso(self.last_used_at) if self.last_used_at else None,
        }


class PasskeyStore(abc.ABC):
    """Passkeys and per-user WebAuthn handles."""

    @abc.abstractmethod
    async def passkey_handle(self, user_id: int, candidate: str) -> str:
        """The user's WebAuthn user handle; `candidate` is stored as it when there is none."""

    @abc.abstractmethod
    async def add_passkey(
        self,
        user_id: int,
        *,
        credential_id: str,
        public_key: str,
        sign_count: int,
        transports: tuple[str, ...],
        name: str,
    ) -> Passkey:
        """Store a new passkey; PasskeyTaken when its credential id is known already."""

    @abc.abstractmethod
    async def list_passkeys(self, user_id: int) -> list[Passkey]:
        """The user's passkeys, oldest first."""

    @abc.abstractmethod
    async def get_passkey(self, user_id: int, passkey_id: int) -> Passkey | None:
        """One of the user's passkeys; None when unknown or someone else's."""

    @abc.abstractmethod
    async def find_passkey(self, credential_id: str) -> tuple[Passkey, str] | None:
        """The passkey with that credential id and its owner's user handle, or None."""

    @abc.abstractmethod
    async def rename_passkey(self, user_id: int, passkey_id: int, name: str) -> Passkey | None:
        """Rename one of the user's passkeys; None when unknown or someone else's."""

    @abc.abstractmethod
    async def delete_passkey(self, user_id: int, passkey_id: int) -> bool:
        """Delete one of the user's passkeys; False when unknown or someone else's."""

    @abc.abstractmethod
    async def count_passkeys(self, user_id: int) -> int:
        """How many passkeys the user has."""

    @abc.abstractmethod
    async def record_passkey_use(self, passkey_id: int, old_count: int, new_count: int) -> bool:
        """Set the sign count and last use, only if the stored count is still `old_count`.

        The compare-and-set means two sign-ins racing with the same assertion counter cannot
        both pass: the loser gets False and is refused.
        """
