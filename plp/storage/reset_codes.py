"""Reset codes (SPEC §13) and the per-user session cut-off: records and the storage interface.

A reset code is kept only as a hash, at most one per user (a newer one replaces it), with its
expiry, its wrong tries and who issued it. Using a code is one atomic step that also sets the
new password and the user's `sessions_from` cut-off, so two requests racing with the same code
cannot both succeed, on SQLite or PostgreSQL. The SQL is in reset_codes_sql.py.
"""

from __future__ import annotations

import abc
import datetime as _dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ResetCode:
    """A user's live (or expired, not yet replaced) reset code, as stored: no code, its hash."""

    user_id: int
    code_hash: str
    expires_at: _dt.datetime
    tries: int
    issued_by: int | None
    issued_at: _dt.datetime


class ResetCodeStore(abc.ABC):
    """Reset codes and the moment before which a user's sessions are over."""

    @abc.abstractmethod
    async def put_reset_code(
        self, user_id: int, code_hash: str, expires_at: _dt.datetime, issued_by: int | None
    ) -> None:
        """Store the user's code, replacing (voiding) any earlier one; NotFound: no such user."""

    @abc.abstractmethod
    async def get_reset_code(self, user_id: int) -> ResetCode | None:
        """The user's stored code, expired or not, or None."""

    @abc.abstractmethod
    async def miss_reset_code(self, user_id: int, code_hash: str, max_tries: int) -> int:
        """Count one wrong try on the code whose hash is `code_hash`; how many it now has.

        At `max_tries` the code is deleted (voided). A code replaced meanwhile (another
        hash) is left alone and 0 is returned.
        """

    @abc.abstractmethod
    async def use_reset_code(
        self,
        user_id: int,
        code_hash: str,
        *,
        now: _dt.datetime,
        max_tries: int,
        password_hash: str,
    ) -> bool:
        """Atomically delete the matching, unexpired, not voided code and set the password
        and the sessions cut-off (`now`); False (nothing changed) if there is no such code."""

    @abc.abstractmethod
    async def cut_sessions(self, user_id: int, moment: _dt.datetime) -> None:
        """Sessions of the user created before `moment` are over (it never moves back)."""

    @abc.abstractmethod
    async def set_password_and_cut_sessions(
        self, user_id: int, password_hash: str, moment: _dt.datetime
    ) -> None:
        """Replace the password and end sessions before `moment`, in one transaction;
        NotFound if there is no such user."""

    @abc.abstractmethod
    async def sessions_cut_since(self, since: float) -> list[tuple[int, float]]:
        """(user id, cut-off) of users whose cut-off is later than `since`; Unix seconds."""

    @abc.abstractmethod
    async def latest_sessions_cut(self) -> float:
        """The latest cut-off of any user (Unix seconds), 0 when there is none."""
