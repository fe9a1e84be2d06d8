"""Authenticator-app (TOTP) records: each user's secret and its recovery codes (SPEC §14).

One row per user holds the secret, sealed (plp/auth/secretbox.py: the storage never sees it
in clear), whether it is still pending (enrolment started, not yet confirmed by a code) or
active, and the last time step a code was accepted for. A code is never accepted twice: a
step is taken by compare-and-set (`use_totp_step`), one statement, so two requests, or two
processes sharing PostgreSQL, cannot both take it. Recovery codes are kept only as SHA-256
hashes and each is used by deleting its row, so only one use can succeed.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TotpRecord:
    """A user's authenticator: the sealed secret, active or pending, the last step taken."""

    user_id: int
    sealed_secret: str
    active: bool
    last_step: int | None


class TotpStore(abc.ABC):
    """The TOTP part of the storage interface."""

    @abc.abstractmethod
    async def get_totp(self, user_id: int) -> TotpRecord | None:
        """The user's authenticator record, pending or active; None when there is none."""

    @abc.abstractmethod
    async def start_totp(self, user_id: int, sealed_secret: str) -> bool:
        """Store a pending secret, replacing a pending one; False (nothing changed) when an
        active authenticator exists."""

    @abc.abstractmethod
    async def activate_totp(self, user_id: int, step: int, recovery_hashes: list[str]) -> bool:
        """Make the pending secret active, with `step` taken and these recovery codes (the
        old ones dropped), in one transaction; False when there is no pending secret."""

    @abc.abstractmethod
    async def use_totp_step(self, user_id: int, step: int) -> bool:
        """Take `step` for the active secret if it is later than the last one taken; False
        when it is not (a replay, or an older code) or the secret is not active."""

    @abc.abstractmethod
    async def reseal_totp(self, user_id: int, old: str, new: str) -> bool:
        """Replace the sealed secret `old` by `new` (the same secret under a newer key)."""

    @abc.abstractmethod
    async def use_recovery_code(self, user_id: int, code_hash: str) -> bool:
        """Remove the recovery code with this hash; True only for the one call that did."""

    @abc.abstractmethod
    async def count_recovery_codes(self, user_id: int) -> int:
        """How many unused recovery codes the user has."""

    @abc.abstractmethod
    async def delete_totp(self, user_id: int) -> bool:
        """Remove the authenticator (pending or active) and its recovery codes; whether there
        was one."""
